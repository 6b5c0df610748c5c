"""The case study's "What if" panel (issue 44): knock out a head or an expert, set the router or
the gate, or ask for the smallest edit of the history that reaches a goal, and see before and
after side by side. Presentation only: the numbers come from fame_core.interventions,
fame_core.counterfactual and fame_core.what_if; the figure from fame_core.intervention_export.

Not a page: case_study.py calls `what_if_panel(ctx, sequence, target, k)` once, at its end,
inside an expander. Nothing is computed until an intervention or a goal is picked.
"""

from __future__ import annotations

import streamlit as st

import session
from fame_core import what_if as wi

KINDS = ["Intervention", "Counterfactual"]


@st.cache_data(max_entries=128, show_spinner="Running the intervention…")
def intervene(path: str, data_path: str | None, sequence: tuple, target, spec: str, mode: str, k: int, split: str):
    """(merges, user(0) of fame_core.interventions.intervene) for one history."""
    from fame_core.interventions import intervene as run

    model, data = session.open_checkpoint(path, data_path)
    res = run(model, [list(sequence)], None if target is None else [int(target)], [spec], k=k, mode=mode,
              dataset=data, split=split)
    return res.merges, res.user(0)


@st.cache_data(max_entries=64, show_spinner="Searching for the smallest edit of the history…")
def counterfactual(path: str, data_path: str | None, sequence: tuple, target, goal: str, k: int, budget: int):
    """fame_core.counterfactual.counterfactual(...).to_dict() for one history."""
    from fame_core.counterfactual import counterfactual as run

    model, _ = session.open_checkpoint(path, data_path)
    return run(model, list(sequence), None if target is None else int(target), goal=goal, k=k, budget=budget).to_dict()


def _open_edited(items: list[int]) -> None:
    """The case study's own counterfactual editing: its text box holds the edited history (a
    callback, so it runs before the box is drawn again)."""
    st.session_state["edit_text"] = ", ".join(map(str, items))


def _side_by_side(ctx, before: dict, after: dict, merges, target, k: int, key: str) -> None:
    label = ctx.label
    c1, c2 = st.columns(2)
    if before["rank"]:
        c1.markdown("**Target rank** (1 = top; change: + is worse)")
        c1.dataframe(wi.rank_table(before, after, merges), hide_index=True, key=f"{key}_ranks")
    else:
        c1.caption("No target: ranks are not shown (a hand-made sequence, or the target is in the history).")
    c2.markdown("**Gate**" + ("" if "gate" in ctx.model.capabilities else " (no gate: every head weighs the same)"))
    c2.dataframe(wi.gate_table(before, after).round(4), hide_index=True, key=f"{key}_gates")
    merge = st.segmented_control("Top-k list of", merges, default="gated", key=f"{key}_merge") or "gated"
    st.caption(f"{merge}: before and after, rank by rank. ＋ entered the top {k}, − left it, ▶ the target.")
    st.dataframe(wi.marked_lists(before["top"][merge][:k], after["top"][merge][:k], label, target),
                 key=f"{key}_lists", height=min(38 + 35 * k, 400))


def _export(ctx, before: dict, after: dict, merges, target, k: int, what: str, meta: dict, key: str) -> None:
    w1, _ = st.columns([1, 3])
    width = w1.selectbox("Figure width", ["single", "double"], key=f"{key}_width",
                         help="single column 3.3 in, double column 7 in: the PDF is exactly this wide")

    def render(fmt: str) -> bytes:
        from fame_core import intervention_export as ie

        fig, table = ie.before_after_figure(before, after, merges, ctx.config.n_items, k, what,
                                            has_gate="gate" in ctx.model.capabilities, width=width)
        return ie.figure_file(fig, table, fmt, dict(meta, width=width))

    stem = f"fame_{ctx.slug}_whatif_{key}"
    st.caption("Before/after figure: target ranks on a log axis 1..catalogue size (top k dashed), gates on 0..1 "
               "with the uniform gate 1/H dashed; the JSON sidecar holds every number, the CSV the table.")
    session.download_row(stem, render, formats=("pdf", "svg", "png", "csv", "json"), key=f"{key}_dl")


def what_if_panel(ctx, sequence, target, k: int) -> None:
    """The panel for one history (the case study's current one, edited or not) and its target."""
    model = ctx.model
    sequence = tuple(int(v) for v in sequence)
    split = st.query_params.get("split") if st.query_params.get("split") in ("test", "valid") else "test"
    kind = st.segmented_control("Ask", KINDS, default="Intervention", key="wi_kind") or "Intervention"
    meta = {"checkpoint": ctx.name, "dataset": ctx.data.name if ctx.data is not None else None,
            "sequence": list(sequence), "target": target, "top_k": k}
    if kind == "Intervention":
        groups = wi.intervention_choices(model)
        choices = [s for g in groups.values() for s in g]
        c1, c2 = st.columns([2, 1])
        spec = c1.selectbox("Intervention", choices, index=None, key="wi_spec", placeholder="choose one",
                            help="head:H ablates head H · expert:H.N knocks out expert N of head H (the router "
                                 "renormalises) · router:H=uniform|argmax sets head H's router · gate=uniform is "
                                 "concat's weights, gate=rule the history's majority head, gate=onehot:h one head. "
                                 "Only what this model has is offered (its capabilities: "
                                 + ", ".join(sorted(model.capabilities)) + ").")
        modes = ["zero", "mean"] if ctx.data is not None else ["zero"]
        mode = "zero"
        if spec and wi.takes_mode(spec):
            mode = c2.segmented_control("Mode", modes, default="zero", key="wi_mode",
                                        help="zero: knocked out; mean: replaced by its mean over the split's users") \
                or "zero"
        if not spec:
            st.caption("Pick an intervention to see the target's rank, the gate and the top-k lists before and after. "
                       "The same over every user of a split: the Interventions page.")
            return
        merges, one = intervene(ctx.path, ctx.data_path, sequence, target, spec, mode, k, split)
        before, after = wi.reading(one["before"]), wi.reading(one["after"])
        what = spec + ("" if mode == "zero" or not wi.takes_mode(spec) else f" ({mode})")
        st.markdown(f"**{what}**: before (the model as trained) and after")
        _side_by_side(ctx, before, after, merges, target, k, "wi")
        if one.get("rule_votes") is not None:
            st.caption("gate=rule: votes per head " + ", ".join(map(str, one["rule_votes"])))
        st.caption(f"CLI: `python -m fame_core intervene --checkpoint {ctx.path} --items "
                   f"{','.join(map(str, sequence))}" + (f" --target {target}" if target is not None else "")
                   + (f" --gate {spec[5:]}" if spec.startswith("gate=") else f" --ablate {spec}")
                   + (f" --mode {mode}" if mode != "zero" else "") + f" --k {k}`")
        if ctx.data is not None:
            st.page_link("views/interventions.py", label=f"{what} over every user of the {split} split",
                         icon=":material/science:", query_params={"checkpoint": ctx.name, "ablate": spec, "mode": mode,
                                                                  "split": split, "k": str(k)})
        _export(ctx, before, after, merges, target, k, what, dict(meta, intervention=what), "intervention")
        return

    goals = wi.goal_choices(model, target)
    c1, c2 = st.columns([2, 1])
    goal = c1.selectbox("Goal", goals, index=None, key="wi_goal", placeholder="choose one",
                        help=f"top-k: bring the target into the top {k} · flip-gate: make another head's gate the "
                             "largest · top-1: change the top-1 item")
    budget = int(c2.slider("Budget (edits)", 1, 3, 3, key="wi_budget"))
    if not goal:
        st.caption("Pick a goal: the smallest edit of this history (remove, replace or insert an item, up to the "
                   "budget) that reaches it, re-verified by inspecting the edited history.")
        return
    cf = counterfactual(ctx.path, ctx.data_path, sequence, target, goal, k, budget)
    if not cf["found"]:
        st.info(f"No edit within the budget of {budget} works: {cf['message']}.")
        return
    st.markdown(f"**{cf['message']}** ({cf['searched']:,} histories scored)")
    if cf["edits"]:
        st.dataframe(wi.edit_table(cf["edits"], ctx.label), hide_index=True, key="wi_edits")
        def chip(p: int, item: int) -> str:
            text = ctx.label(item).replace("[", "(").replace("]", ")")
            return f":{'orange' if item not in set(sequence) else 'gray'}-badge[{p + 1} · {text}]"

        st.markdown("**Edited history** (orange: not in the history before): "
                    + " → ".join(chip(p, i) for p, i in enumerate(cf["edited"])))
        o1, o2 = st.columns([1, 2])
        o1.button("Open the edited history in the case study", key="wi_open", on_click=_open_edited,
                  args=(cf["edited"],), help="Puts it in 'Edit the history' above: every view of the page follows")
        o2.code(wi.replay_command(ctx.path, cf["edited"], target), language="bash")
    before, after = wi.reading(cf["before"]), wi.reading(cf["after"])
    merges = list(before["top"])
    _side_by_side(ctx, before, after, merges, target, k, "cf")
    edits = "; ".join(f"{e['op']} {e['item']} at {e['position']}" for e in cf["edits"]) or "no edit"
    _export(ctx, before, after, merges, target, k, f"{goal}: {edits}",
            dict(meta, goal=goal, budget=budget, edits=cf["edits"], edited=cf["edited"]), "counterfactual")
