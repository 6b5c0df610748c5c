"""Interventions on a trained model: knock out a head or an expert, set the router or the gate,
patch in another user's activations, and read what changes (issue 44).

    res = intervene(model, [seq], [target], ["expert:1.2", "gate=rule"], k=20)
    res.before.ranks["gated"], res.after.ranks["gated"], res.after.gates
    pop = intervene_population(model, dataset, "test", ["head:0"], k=20)   # every user, batched

Interventions are spec strings, parsed once (`Intervention.parse`), or `Intervention` objects:

    head:H            ablate head H. mode zero: its weight in the merge is set to 0 (the other heads
                      keep theirs; a model without a gate: its output F^(H) is set to 0, the same
                      thing, since its score sums the heads). mode mean: F^(H) is replaced by its mean
                      (see "Means"), and the gate, which reads the heads, follows.
    expert:H.N        ablate expert N of head H. mode zero: its router weight beta^(H)_(N) is set to
                      0 and the others renormalised to sum 1 (the router chooses among the remaining
                      experts in its own proportions; a head of one expert cannot lose it). mode mean:
                      its output f^(H)_(N) is replaced by its mean, and the router, which reads it,
                      follows.
    router:H[=uniform|argmax]  head H's router weights set to 1/N each (the default) or one-hot at
                      their own largest weight.
    gate=uniform      g = 1/H each: the same weights as the "concat" merge, so the same scores exactly.
    gate=onehot:h     g = one-hot at head h.
    gate=fixed:w0,..  g = the H weights as given (not renormalised).
    gate=rule         g = one-hot at the history's majority head: each input item votes for the head
                      that ranks it higher, by its rank under that head's score P^(h) at the last
                      position among all items 1..n (history not masked; ties: the lower head);
                      the head with most votes wins (ties: the lower head). Read from the heads as
                      intervened before the gate (after head/expert/router edits).
    gate=user:V       g = user V's own gate (its input of the same split); user:self = the user's
                      own (clean) gate, the identity.
    patch:NAME=user:V|user:self   the named intermediate (`fame_core.hooks`) replaced by the same
                      intermediate of user V's clean forward pass (or of the user's own). Across users
                      only names of the last position whose shape does not depend on the input length.

Several interventions compose. At one hook point they apply in this order: patches, then settings
(gate=..., router:...), then ablations, so "gate=uniform" with "head:0" drops head 0 from equal
weights. Everything is read at the last position (the forward pass runs with last_only).

Means (mode mean) are taken over users: the mean of the clean intermediate at each user's last
position, over a reference population: in `intervene_population`, every user of the split; in
`intervene`, `reference` (from `reference_means`) or, given a data set, its users of the split.
A mean over one's own positions is not used: it would mix positions the head never reads.

Read-outs, before and after, per user: the target's 1-based rank under every merge mode (ties
against the target, history masked as in `fame_core.inspect`), the top-k list under every merge,
the gated merge's head weights and the router at the last position. `intervene_population` adds
per-user HR@k and NDCG@k, their means and mean change, the paired Wilcoxon signed-rank test of
per-user NDCG@k (two-sided, zero differences dropped: scipy's zero_method="wilcox", p = 1 when no
user changes; `fame_core.stats.wilcoxon_by_user`) and the paired bootstrap 95 % interval of the mean
NDCG@k change (users resampled with replacement, 2000 resamples, seed 0: `fame_core.stats.bootstrap_ci`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .errors import ConfigError, FameError
from .evaluate import left_pad, mask_items, rank_targets
from .hooks import _locate, check_names, run
from .models import merge_modes

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender

MODES = ("zero", "mean")
SPECS = ("head:H, expert:H.N, router:H[=uniform|argmax], gate=uniform|rule|onehot:h|fixed:w0,w1,..|user:V|user:self, "
         "patch:NAME=user:V|user:self")
GATE_VALUES = "uniform|rule|onehot:h|fixed:w0,w1,..|user:V|user:self"
# names whose last-position value can be carried from one user to another (no length axis)
_PORTABLE = re.compile(r"(head\.\d+|router\.\d+|gate|gate\.logits|block\.\d+\.(out|expert_query\.\d+\.\d+|"
                       r"expert_out\.\d+\.\d+))")


@dataclass(frozen=True)
class Intervention:
    """One intervention (module docstring); `parse` reads a spec string."""

    kind: str                 # head, expert, router, gate, patch
    head: int | None = None
    expert: int | None = None
    value: str | None = None  # router: uniform|argmax; gate: uniform|rule|onehot:h|fixed:..|user:V; patch: user:V
    name: str | None = None   # patch: the named intermediate
    mode: str = "zero"        # head and expert ablations: zero or mean

    @classmethod
    def parse(cls, spec, mode: str = "zero") -> Intervention:
        if isinstance(spec, Intervention):
            return spec
        if mode not in MODES:
            raise ConfigError(f"mode {mode!r}: use zero or mean")
        s = str(spec).strip().replace(" ", "")
        m = re.fullmatch(r"head:(\d{1,4})", s)
        if m:
            return cls("head", head=int(m[1]), mode=mode)
        m = re.fullmatch(r"expert:(\d{1,4})\.(\d{1,4})", s)
        if m:
            return cls("expert", head=int(m[1]), expert=int(m[2]), mode=mode)
        m = re.fullmatch(r"router:(\d{1,4})(?:=(uniform|argmax))?", s)
        if m:
            return cls("router", head=int(m[1]), value=m[2] or "uniform")
        m = re.fullmatch(r"gate=(.+)", s)
        if m:
            return cls("gate", value=_gate_value(m[1]))
        m = re.fullmatch(r"patch:([a-z_.0-9]+)=user:(.+)", s)
        if m:
            return cls("patch", name=m[1], value=f"user:{m[2]}")
        if s.startswith("gate"):
            raise ConfigError(f"gate intervention {str(spec)[:40]!r}: pass gate={GATE_VALUES}")
        raise ConfigError(f"unknown intervention {str(spec)[:40]!r}; pass one of {SPECS}")

    @property
    def spec(self) -> str:
        suffix = "" if self.mode == "zero" or self.kind not in ("head", "expert") else f" ({self.mode})"
        return {"head": f"head:{self.head}", "expert": f"expert:{self.head}.{self.expert}",
                "router": f"router:{self.head}={self.value}", "gate": f"gate={self.value}",
                "patch": f"patch:{self.name}={self.value}"}[self.kind] + suffix

    @property
    def user(self) -> str | None:
        """The other user whose activations it reads (gate=user:V, patch:..=user:V), or None."""
        if self.value and self.value.startswith("user:") and self.value != "user:self":
            return self.value[5:]
        return None

    def check(self, model: Recommender) -> None:
        """ConfigError where the model lacks the part or the index is out of range."""
        cfg, caps, kind = model.config, model.capabilities, type(model).__name__
        H, N = cfg.n_heads, cfg.n_experts
        have = ", ".join(sorted(caps)) or "none"
        needs = {"expert": "experts", "router": "router", "gate": "gate"}.get(self.kind)
        if needs and needs not in caps:
            raise ConfigError(f"{self.spec}: {kind} has no {needs} (its capabilities: {have}); "
                              f"ablate a head instead (head:0..head:{H - 1})")
        if self.head is not None and not 0 <= self.head < H:
            raise ConfigError(f"{self.spec}: no head {self.head}; this model has heads 0..{H - 1}")
        if self.expert is not None and not 0 <= self.expert < N:
            raise ConfigError(f"{self.spec}: no expert {self.expert}; head {self.head} has experts 0..{N - 1}")
        if self.kind == "expert" and self.mode == "zero" and N == 1:
            raise ConfigError(f"{self.spec}: head {self.head} has one expert, which cannot be knocked out; "
                              f"ablate the head (head:{self.head}) or pass mode mean")
        if self.kind == "gate" and self.value.startswith("onehot:") and not int(self.value[7:]) < H:
            raise ConfigError(f"gate={self.value}: no head {self.value[7:]}; pass onehot:0..onehot:{H - 1}")
        if self.kind == "gate" and self.value.startswith("fixed:") and len(self.value[6:].split(",")) != H:
            raise ConfigError(f"gate={self.value}: give {H} weights, one per head (fixed:w0,...,w{H - 1})")
        if self.kind == "patch":
            check_names(model, [self.name])
            if self.name.startswith("scores."):
                raise ConfigError(f"{self.spec}: scores are read after the forward pass; patch head.h or gate")
            if self.user is not None and not _PORTABLE.fullmatch(self.name):
                raise ConfigError(f"{self.spec}: {self.name} has a length axis, so it cannot be carried to "
                                  "another user; patch head.h, router.h, gate or a block's last output")


def _gate_value(v: str) -> str:
    if v in ("uniform", "rule") or re.fullmatch(r"onehot:\d{1,4}", v) or re.fullmatch(r"user:.+", v):
        return v
    m = re.fullmatch(r"fixed:(.+)", v)
    if m:
        try:
            w = [float(x) for x in m[1].split(",")]
        except ValueError:
            w = []
        if w and all(np.isfinite(w)) and min(w) >= 0 and sum(w) > 0:
            return "fixed:" + ",".join(repr(x) for x in w)
        raise ConfigError(f"gate=fixed:{m[1][:40]}: give one non-negative weight per head, e.g. fixed:0.7,0.3")
    raise ConfigError(f"gate={v[:40]}: pass gate={GATE_VALUES}")


def parse_all(model: Recommender, interventions, mode: str = "zero") -> list[Intervention]:
    """Spec strings (or Interventions) parsed and checked against the model, once."""
    if isinstance(interventions, (str, Intervention)):
        interventions = [interventions]
    out = [Intervention.parse(s, mode) for s in interventions]
    if not out:
        raise ConfigError(f"no intervention given; pass one of {SPECS}")
    for iv in out:
        iv.check(model)
    return out


# ---- what each intervention does at its hook point -------------------------------------------------

def _needs(model: Recommender, ivs) -> tuple[list[str], list[str]]:
    """(names read from the clean pass for user:self patches, names whose population mean is needed)."""
    L = model.config.n_layers
    clean, means = [], []
    for iv in ivs:
        if iv.value == "user:self":
            clean.append("gate" if iv.kind == "gate" else iv.name)
        if iv.mode == "mean" and iv.kind == "head":
            means.append(f"head.{iv.head}")
        if iv.mode == "mean" and iv.kind == "expert":
            means.append(f"block.{L - 1}.expert_out.{iv.head}.{iv.expert}")
    return sorted(set(clean)), sorted(set(means))


def rule_votes(model: Recommender, heads_last: torch.Tensor, sequences) -> torch.Tensor:
    """(B, H) votes of each input's items for the head that ranks them higher (module docstring:
    gate=rule). heads_last: (B, H, d') the per-head outputs at the last position."""
    cfg = model.config
    H = cfg.n_heads
    sub = model.item_sub_embeddings()
    bias = model.head_item_bias()
    votes = torch.zeros(len(sequences), H, device=heads_last.device)
    hist = left_pad(sequences, cfg.max_len, heads_last.device)                 # (B, S), 0 = padding
    for i in range(0, len(sequences), 128):
        P = torch.einsum("hve,bhe->bhv", sub, heads_last[i:i + 128])            # (b, H, n+1)
        if bias is not None:
            P = P + bias[None]
        P[:, :, 0] = -torch.inf
        h = hist[i:i + 128]
        val = P.gather(2, h[:, None, :].expand(-1, H, -1))                      # (b, H, S)
        srt = torch.sort(P, dim=-1).values
        rank = P.shape[-1] - torch.searchsorted(srt.contiguous(), val.contiguous(), right=True)  # items above
        choice = rank.argmin(1)                                                 # (b, S) ties: lower head
        ok = (h != 0).to(votes.dtype)
        votes[i:i + 128] = torch.nn.functional.one_hot(choice, H).to(votes.dtype).mul(ok[..., None]).sum(1)
    return votes


class _Context:
    """What the edits of one batch read: its input sequences, the clean pass's cache (user:self),
    other users' cached values (user:V) and the reference means (mode mean)."""

    def __init__(self, sequences, clean=None, others=None, means=None):
        self.sequences, self.clean, self.others, self.means = sequences, clean or {}, others or {}, means or {}
        self.heads = None
        self.votes = None


def _set(tensor, index, value):
    t = tensor.clone()
    t[index] = value
    return t


def _edits(model: Recommender, ivs, ctx: _Context) -> dict:
    cfg, caps = model.config, model.capabilities
    H, L = cfg.n_heads, cfg.n_layers
    ordered = ([iv for iv in ivs if iv.kind == "patch"] + [iv for iv in ivs if iv.kind in ("gate", "router")]
               + [iv for iv in ivs if iv.kind in ("head", "expert")])
    edits: dict[str, list] = {}

    def add(point, fn):
        edits.setdefault(point, []).append(fn)

    for iv in ordered:
        h, n = iv.head, iv.expert
        if iv.kind == "patch":
            point, index = _locate(model, iv.name)
            source = ctx.clean if iv.value == "user:self" else ctx.others[iv.user]
            add(point, lambda t, index=index, v=source[iv.name]: _set(t, index, v))
        elif iv.kind == "gate":
            v = iv.value
            if v == "uniform":
                add("gate", lambda t: torch.full_like(t, 1.0 / H))
            elif v.startswith("onehot:"):
                add("gate", lambda t, j=int(v[7:]): torch.nn.functional.one_hot(torch.full(t.shape[:-1], j,
                    device=t.device), H).to(t.dtype))
            elif v.startswith("fixed:"):
                w = torch.tensor([float(x) for x in v[6:].split(",")])
                add("gate", lambda t, w=w: w.to(t).expand_as(t).clone())
            elif v == "user:self":
                add("gate", lambda t: ctx.clean["gate"].clone())
            elif v.startswith("user:"):
                add("gate", lambda t, g=ctx.others[iv.user]["gate"]: g.to(t).expand_as(t).clone())
            else:   # rule: read the heads as they reach the gate
                def rule(t):
                    ctx.votes = rule_votes(model, ctx.heads[:, -1], ctx.sequences)
                    return torch.nn.functional.one_hot(ctx.votes.argmax(1), H).to(t.dtype)[:, None].expand_as(t).clone()
                add("gate", rule)
        elif iv.kind == "router":
            if iv.value == "uniform":
                add("router", lambda t, h=h: _set(t, (slice(None), h), 1.0 / t.shape[-1]))
            else:
                add("router", lambda t, h=h: _set(t, (slice(None), h), torch.nn.functional.one_hot(
                    t[:, h].argmax(-1), t.shape[-1]).to(t.dtype)))
        elif iv.kind == "head" and iv.mode == "zero":
            if "gate" in caps:
                add("gate", lambda t, h=h: _set(t, (..., h), 0.0))
            else:
                add("heads", lambda t, h=h: _set(t, (slice(None), slice(None), h), 0.0))
        elif iv.kind == "head":
            add("heads", lambda t, h=h: _set(t, (slice(None), slice(None), h), ctx.means[f"head.{h}"]))
        elif iv.kind == "expert" and iv.mode == "zero":
            def knock(t, h=h, n=n):
                b = _set(t, (slice(None), h, slice(None), n), 0.0)
                b[:, h] = b[:, h] / b[:, h].sum(-1, keepdim=True).clamp_min(torch.finfo(b.dtype).tiny)
                return b
            add("router", knock)
        else:
            name = f"block.{L - 1}.expert_out.{h}.{n}"
            add("expert_out", lambda t, h=h, n=n, name=name: _set(t, (slice(None), h, n), ctx.means[name]))
    if any(iv.kind == "gate" and iv.value == "rule" for iv in ivs):
        def stash(t):
            ctx.heads = t
            return t
        add("heads", stash)
    return edits


# ---- references: other users and means ------------------------------------------------------------------

@torch.no_grad()
def reference_means(model: Recommender, sequences, names, batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """{name: mean over the sequences of its clean value at the last position} (batched)."""
    names = list(names)
    if not names:
        return {}
    sums = {}
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start:start + batch_size]
        _, cache = run(model, left_pad(batch, model.config.max_len, next(model.parameters()).device), names,
                       last_only=True)
        for nm in names:
            s = cache[nm][:, -1].double().sum(0)
            sums[nm] = s if nm not in sums else sums[nm] + s
    return {nm: (s / len(sequences)).to(next(model.parameters()).dtype) for nm, s in sums.items()}


def _others(model: Recommender, ivs, dataset, split: str) -> dict:
    """{user id: {name: (1, 1, ...) clean value}} for every user:V the interventions read."""
    out = {}
    for iv in ivs:
        if iv.user is None:
            continue
        if dataset is None:
            raise FameError(f"{iv.spec} reads user {iv.user}'s activations: pass the data set (dataset=, or --data)")
        seq, _ = dataset.example(dataset.user_row(iv.user), split)
        name = "gate" if iv.kind == "gate" else iv.name
        _, cache = run(model, [seq], [name], last_only=True)
        out.setdefault(iv.user, {})[name] = cache[name]
    return out


# ---- one batch, before and after ----------------------------------------------------------------------

@dataclass
class Reading:
    """What one forward pass gives for each user: ranks (merge -> (U,) 1-based, or None without
    targets), top (merge -> (U, k) item ids), gates (U, H) the gated merge's head weights, router
    (U, H, N) at the last position or None."""

    ranks: dict | None
    top: dict
    gates: np.ndarray
    router: np.ndarray | None


@dataclass
class InterventionResult:
    interventions: list[str]
    k: int
    merges: list[str]
    sequences: list[np.ndarray]
    targets: list[int] | None
    before: Reading
    after: Reading
    rule_votes: np.ndarray | None = None   # (U, H) with gate=rule
    notes: list[str] = field(default_factory=list)

    def user(self, i: int) -> dict:
        """User i's before and after, JSON-ready."""
        def side(r: Reading):
            return {"rank": None if r.ranks is None else {m: int(r.ranks[m][i]) for m in self.merges},
                    "top": {m: r.top[m][i].tolist() for m in self.merges}, "gates": r.gates[i].tolist(),
                    "router": None if r.router is None else r.router[i].tolist()}
        out = {"sequence": [int(v) for v in self.sequences[i]],
               "target": None if self.targets is None else int(self.targets[i]),
               "before": side(self.before), "after": side(self.after)}
        if self.rule_votes is not None:
            out["rule_votes"] = self.rule_votes[i].tolist()
        return out

    def to_dict(self) -> dict:
        return {"interventions": self.interventions, "k": self.k, "merges": self.merges,
                "users": [self.user(i) for i in range(len(self.sequences))], "notes": self.notes}


def _read(model: Recommender, out, sequences, targets, k: int, merges) -> Reading:
    E = model.item_embeddings()
    ranks, top = ({} if targets is not None else None), {}
    k = min(k, E.shape[0] - 1)
    for m in merges:
        s = model.represent(out, m)[:, -1] @ E.T
        mask_items(s, [np.asarray(x) for x in sequences])
        if targets is not None:
            t = s.gather(1, torch.as_tensor(np.asarray(targets), device=s.device)[:, None])
            ranks[m] = (s >= t).sum(1).cpu().numpy()           # 1-based, ties against the target
        sn = s.float().cpu().numpy()
        top[m] = np.argsort(-sn, axis=1, kind="stable")[:, :k]
    return Reading(ranks=ranks, top=top, gates=out.head_weights("gated")[:, -1].cpu().numpy(),
                   router=None if out.router is None else out.router[:, :, -1].cpu().numpy())


@torch.no_grad()
def _pair(model: Recommender, ivs, batch: torch.Tensor, sequences, others, means):
    """(clean output, intervened output, context) of one batch."""
    clean_names, _ = _needs(model, ivs)
    before, clean = run(model, batch, clean_names, last_only=True)
    ctx = _Context(sequences, clean, others, means)
    after, _ = run(model, batch, (), _edits(model, ivs, ctx), last_only=True)
    return before, after, ctx


def intervene(model: Recommender, sequences, targets, interventions, k: int = 20, mode: str = "zero", dataset=None,
              split: str = "test", reference: dict | None = None) -> InterventionResult:
    """Before and after the interventions for each input sequence (module docstring); one batched
    pass each. targets may be None (no ranks). dataset: for user:V and, without `reference`, for
    the means of mode mean (its users of `split`)."""
    model.eval()
    ivs = parse_all(model, interventions, mode)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a whole number of at least 1, not {k!r}")
    cfg = model.config
    seqs = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]   # the model reads the newest max_len
    if not seqs or any(len(s) == 0 for s in seqs):
        raise FameError("an input sequence is empty; give at least one item id")
    for s in seqs:
        bad = s[(s < 1) | (s > cfg.n_items)]
        if bad.size:
            raise FameError(f"item id {int(bad[0])} is not an item of this model (ids 1..{cfg.n_items})")
    _, mean_names = _needs(model, ivs)
    if mean_names and reference is None:
        if dataset is None:
            raise FameError("mode mean replaces an intermediate by its mean over a population: pass dataset= "
                            "(its users of the split) or reference=reference_means(model, sequences, names)")
        rows = dataset.splittable_rows()
        reference = reference_means(model, [dataset.example(r, split)[0] for r in rows], mean_names)
    missing = [n for n in mean_names if n not in (reference or {})]
    if missing:
        raise FameError(f"reference has no mean of {missing[0]}; compute it with reference_means(..., {mean_names})")
    others = _others(model, ivs, dataset, split)
    batch = left_pad(seqs, cfg.max_len, next(model.parameters()).device)
    before, after, ctx = _pair(model, ivs, batch, seqs, others, reference)
    merges = merge_modes(cfg.n_heads)
    with torch.no_grad():
        rb = _read(model, before, seqs, targets, k, merges)
        ra = _read(model, after, seqs, targets, k, merges)
    return InterventionResult(interventions=[iv.spec for iv in ivs], k=k, merges=merges, sequences=seqs,
                              targets=None if targets is None else [int(t) for t in targets], before=rb, after=ra,
                              rule_votes=None if ctx.votes is None else ctx.votes.cpu().numpy().astype(int))


# ---- the population ---------------------------------------------------------------------------------------

def intervene_population(model: Recommender, dataset, split: str = "test", interventions=(), k: int = 20, mode: str = "zero",
                         batch_size: int = 1024, progress: bool = False) -> dict:
    """Every user of `split` (at least 3 items) before and after the interventions, batched by
    input length; the model's own (gated) ranking. Returns {"table": DataFrame (user, row, length,
    target, rank_before, rank_after (1-based), hr/ndcg before and after, gate_before_h,
    gate_after_h), "summary": {...}} (module docstring)."""
    from .stats import bootstrap_ci, hit_at, ndcg_at, wilcoxon_by_user, BOOTSTRAP_RESAMPLES
    from .evaluate import metrics_from_ranks

    model.eval()
    ivs = parse_all(model, interventions, mode)
    cfg = model.config
    device = next(model.parameters()).device
    rows = dataset.splittable_rows()
    examples = [dataset.example(r, split) for r in rows]
    inputs = [x for x, _ in examples]
    targets = np.array([t for _, t in examples], dtype=np.int64)
    _, mean_names = _needs(model, ivs)
    means = reference_means(model, inputs, mean_names, batch_size)
    others = _others(model, ivs, dataset, split)
    order = np.argsort([min(len(x), cfg.max_len) for x in inputs], kind="stable")
    U, H = len(inputs), cfg.n_heads
    rank_b, rank_a = np.empty(U, dtype=np.int64), np.empty(U, dtype=np.int64)
    gate_b, gate_a = np.empty((U, H), dtype=np.float32), np.empty((U, H), dtype=np.float32)
    E = model.item_embeddings()
    for start in tqdm(range(0, U, batch_size), desc=f"intervene {split}", disable=None if progress else True,
                      leave=False):
        idx = order[start:start + batch_size]
        batch_seqs = [inputs[i] for i in idx]
        batch = left_pad(batch_seqs, cfg.max_len, device)
        before, after, _ = _pair(model, ivs, batch, batch_seqs, others, means)
        t = torch.as_tensor(targets[idx], device=device)
        with torch.no_grad():
            rank_b[idx] = rank_targets(model.represent(before, "gated")[:, -1], E, t, batch_seqs).cpu().numpy()
            rank_a[idx] = rank_targets(model.represent(after, "gated")[:, -1], E, t, batch_seqs).cpu().numpy()
        gate_b[idx] = before.head_weights("gated")[:, -1].cpu().numpy()
        gate_a[idx] = after.head_weights("gated")[:, -1].cpu().numpy()
    nb, na = ndcg_at(rank_b, k), ndcg_at(rank_a, k)
    hb, ha = hit_at(rank_b, k), hit_at(rank_a, k)
    table = pd.DataFrame({"user": [dataset.user_ids[r] for r in rows], "row": rows,
                          "length": [len(x) for x, _ in examples], "target": targets,
                          "rank_before": rank_b + 1, "rank_after": rank_a + 1, f"hr@{k}_before": hb,
                          f"hr@{k}_after": ha, f"ndcg@{k}_before": nb, f"ndcg@{k}_after": na})
    for h in range(H):
        table[f"gate_before_{h}"], table[f"gate_after_{h}"] = gate_b[:, h], gate_a[:, h]
    diff = na - nb
    statistic, p = wilcoxon_by_user(na, nb)
    lo, hi = bootstrap_ci(diff, seed=0)
    summary = {"interventions": [iv.spec for iv in ivs], "split": split, "users": int(U), "k": k,
               "dataset": dataset.name, "before": metrics_from_ranks(rank_b, (k,)),
               "after": metrics_from_ranks(rank_a, (k,)), f"mean_change_NDCG@{k}": float(diff.mean()) if U else 0.0,
               f"mean_change_HR@{k}": float((ha - hb).mean()) if U else 0.0,
               "users_better": int((rank_a < rank_b).sum()), "users_worse": int((rank_a > rank_b).sum()),
               "users_unchanged": int((rank_a == rank_b).sum()),
               "test": f"Wilcoxon signed-rank test of per-user NDCG@{k}, after vs before (two-sided, zero "
                       "differences dropped: zero_method='wilcox'; p = 1 when no user changes)",
               "statistic": statistic, "p_value": p,
               "ci95_mean_change": [lo, hi],
               "ci": f"paired bootstrap percentile interval of the mean NDCG@{k} change ({BOOTSTRAP_RESAMPLES} "
                     "resamples of users, seed 0)",
               "mean_gate_before": gate_b.mean(0).tolist() if U else [], "mean_gate_after": gate_a.mean(0).tolist() if U else []}
    return {"table": table, "summary": summary}


__all__ = ["Intervention", "InterventionResult", "Reading", "intervene", "intervene_population", "parse_all",
           "reference_means", "rule_votes", "MODES", "SPECS"]
