"""The exportable figures of one inspection, by name (no plotting here: the app lists them
without importing matplotlib; fame_core.export draws them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FigureSpec:
    """One exportable figure of an inspection: `kind` one of case_study, gates, expert_attention,
    router, attention_map; `stem` its file name; `title` what a menu shows."""

    kind: str
    head: int | None = None
    expert: int | None = None

    @property
    def stem(self) -> str:
        if self.kind in ("case_study", "gates"):
            return self.kind
        if self.kind == "expert_attention":
            return f"attention_head{self.head}"
        if self.kind == "router":
            return f"router_head{self.head}"
        return f"attention_head{self.head}_expert{self.expert}"

    @property
    def title(self) -> str:
        return {"case_study": "Case study (Figure 7 layout)", "gates": "Gates",
                "expert_attention": f"Expert attention, head {self.head}", "router": f"Router weights, head {self.head}",
                "attention_map": f"Attention map, head {self.head}, expert {self.expert}"}[self.kind]

    def meta(self) -> dict:
        return {"figure": self.kind.replace("_", " "), "head": self.head, "expert": self.expert}


def figure_catalogue(insp) -> list[FigureSpec]:
    specs = [FigureSpec("case_study"), FigureSpec("gates")]
    for h in range(insp.n_heads):
        specs += [FigureSpec("expert_attention", h), FigureSpec("router", h)]
        specs += [FigureSpec("attention_map", h, n) for n in range(insp.n_experts)]
    return specs
