"""Counterfactual histories: the smallest edit of a user's history that changes what the model does (issue 44).

    cf = counterfactual(model, seq, target, goal="top-k", k=20, budget=3)
    cf.found, cf.edits, cf.edited, cf.after["target_rank"]["gated"], cf.message

Goals (under the model's own, gated, ranking; history items masked as in `fame_core.inspect`):

    top-k      bring the target into the top k (its 1-based rank <= k, ties against it)
    flip-gate  make another head's gate the largest: `head` if given, else the head with the
               second-largest gate (FAME; a model without a gate is refused)
    top-1      change the top-1 item

Edits: remove the item at a position, replace it by a catalogue item, or insert a catalogue item
before a position (or at the end, the newest). A position is 0-based in the history as it is when
the edit applies (edits apply in order, oldest item first); only the positions the model sees (the
newest max_len) are edited. Older items, invisible to the model, stay (and stay masked).

Search: beam search (width `beam`, default 3) over edit sequences of 1..budget edits. Each state's
positions are ordered by gradient x input: the gradient of the goal's margin (below) with respect
to each position's input embedding x_i (the "embed" hook point), times x_i, summed over d; the
`positions` (default 4) most negative, i.e. most against the goal, are the positions for
replacements and insertions (with the end); every visible position is tried for removal.
Catalogue items tried (fixed at the start): the `candidates` // 2 (default 25) top items of the
current gated ranking, and as many goal-side items: the target's nearest neighbours by cosine of
item embeddings (top-k), the top items of the head to flip to (flip-gate), the runner-up's
neighbours (top-1). For top-k the target itself is left out (inserting it would mask it), for
top-1 the current top item (likewise). `candidates` may also be an explicit list of item ids.

Each candidate is scored by its margin towards the goal, one batched forward pass per step:
top-k: the target's score minus the k-th highest other score (> 0: reached); flip-gate: g of the
goal head minus the largest other g; top-1: the best other score minus the current top item's.
The search stops at the first depth where some edit reaches the goal. Among those, removals come
before replacements before insertions (a removal adds nothing to the history; then the last edit's
kind decides), then the larger margin. Note that the history is masked from the ranking: inserting
an item ranked above the target also lifts the target by one, and removing an item makes it
rankable again (it may become the new top-1: "without it in the history, the model would
recommend it").

Every returned counterfactual is re-verified by `fame_core.inspect` on the edited history
(`verified`); `before` and `after` are the two inspections' `to_dict(k)` (every merge's list, the
gates, the target's ranks). When no edit within the budget reaches the goal: found=False, a plain
`message`, and the closest state found (`best`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import ConfigError, FameError
from .evaluate import left_pad, mask_items

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender

GOALS = ("top-k", "flip-gate", "top-1")
KIND_ORDER = {"remove": 0, "replace": 1, "insert": 2}
CHUNK = 512   # candidate histories scored at once


@dataclass
class Counterfactual:
    goal: str
    k: int
    budget: int
    target: int | None
    found: bool
    message: str
    sequence: list[int]                 # the history as given
    edited: list[int] | None            # the edited history (None when not found)
    edits: list[dict]                   # [{"op", "position", "item", ("old")}], applied in order
    before: dict                        # inspect(sequence).to_dict(k)
    after: dict | None                  # inspect(edited).to_dict(k)
    verified: bool = False
    goal_head: int | None = None        # flip-gate: the head made largest
    top_item: int | None = None         # top-1: the item that was first
    best: dict | None = None            # not found: the closest state {"edits", "edited", "margin"}
    searched: int = 0                   # candidate histories scored
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.edits)

    def to_dict(self) -> dict:
        return {"goal": self.goal, "k": self.k, "budget": self.budget, "target": self.target, "found": self.found,
                "message": self.message, "size": self.size, "edits": self.edits, "sequence": self.sequence,
                "edited": self.edited, "edited_items": None if self.edited is None else ",".join(map(str, self.edited)),
                "verified": self.verified, "goal_head": self.goal_head, "top_item": self.top_item,
                "before": self.before, "after": self.after, "best": self.best, "searched": self.searched,
                "seconds": round(self.seconds, 3)}


def apply_edit(seq: tuple, edit: dict) -> tuple:
    p, op = edit["position"], edit["op"]
    if op == "remove":
        return seq[:p] + seq[p + 1:]
    if op == "replace":
        return seq[:p] + (edit["item"],) + seq[p + 1:]
    return seq[:p] + (edit["item"],) + seq[p:]


class _Goal:
    """The margin of a goal over a batch of histories (> 0: reached), and its differentiable form."""

    def __init__(self, model: Recommender, goal, k, target, goal_head, top_item, runner_up, kth_item):
        self.model, self.goal, self.k, self.target = model, goal, k, target
        self.goal_head, self.top_item, self.runner_up, self.kth_item = goal_head, top_item, runner_up, kth_item

    @torch.no_grad()
    def margins(self, seqs) -> np.ndarray:
        m, out_all = self.model, []
        E = m.item_embeddings()
        dev = E.device
        for i in range(0, len(seqs), CHUNK):
            chunk = [np.asarray(s) for s in seqs[i:i + CHUNK]]
            out = m(left_pad(chunk, m.config.max_len, dev), last_only=True)
            if self.goal == "flip-gate":
                g = out.gates[:, -1]
                others = g.clone()
                others[:, self.goal_head] = -torch.inf
                out_all.append((g[:, self.goal_head] - others.amax(1)).cpu().numpy())
                continue
            s = m.scores(out, "gated")
            mask_items(s, chunk)
            key = self.target if self.goal == "top-k" else self.top_item
            t = s[:, key].clone()
            s[:, key] = -torch.inf
            if self.goal == "top-k":
                kth = s.topk(self.k, dim=1).values[:, -1]
                out_all.append((t - kth).cpu().numpy())
            else:
                out_all.append((s.amax(1) - t).cpu().numpy())
        return np.concatenate(out_all).astype(np.float64)

    def attribution(self, seq) -> np.ndarray:
        """Gradient x input of the margin per visible position (oldest first)."""
        m = self.model
        box = {}

        def hook(point, t):
            if point == "embed":
                t = t.detach().requires_grad_(True)
                box["x"] = t
            return t
        x_ids = left_pad([np.asarray(seq)], m.config.max_len, m.item_embeddings().device)
        with torch.enable_grad():
            out = m(x_ids, last_only=True, hook=hook)
            if self.goal == "flip-gate":
                g = out.gates[0, -1]
                other = int(torch.cat([g[:self.goal_head], torch.full((1,), -1.0), g[self.goal_head + 1:]]).argmax())
                obj = g[self.goal_head] - g[other]
            else:
                u = m.represent(out, "gated")[0, -1]
                E = m.item_embeddings()
                a, b = (self.target, self.kth_item) if self.goal == "top-k" else (self.runner_up, self.top_item)
                obj = u @ E[a] - u @ E[b]
            (grad,) = torch.autograd.grad(obj, box["x"])
        return (grad * box["x"]).sum(-1)[0].detach().cpu().numpy()


def _neighbours(model: Recommender, item: int, n: int, exclude) -> list[int]:
    E = model.embed.E.weight.detach()
    sim = torch.nn.functional.cosine_similarity(E, E[item][None], dim=1)
    sim[0] = -torch.inf
    for v in exclude:
        sim[int(v)] = -torch.inf
    return torch.topk(sim, min(n, len(sim) - 1)).indices.tolist()


def counterfactual(model: Recommender, sequence, target: int | None = None, goal: str = "top-k", k: int = 20, budget: int = 3,
                   candidates=50, beam: int = 3, positions: int = 4, head: int | None = None) -> Counterfactual:
    """The smallest edit (up to `budget`) of `sequence` that reaches `goal` (module docstring)."""
    from .inspection import inspect

    t0 = time.perf_counter()
    model.eval()
    cfg = model.config
    if goal not in GOALS:
        raise ConfigError(f"unknown goal {goal!r}; pass one of {', '.join(GOALS)}")
    for name, v, lo in (("k", k, 1), ("budget", budget, 1), ("beam", beam, 1), ("positions", positions, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ConfigError(f"{name} must be a whole number of at least {lo}, not {v!r}")
    if goal == "flip-gate" and "gate" not in model.capabilities:
        raise ConfigError(f"flip-gate: {type(model).__name__} has no gate (its capabilities: "
                          f"{', '.join(sorted(model.capabilities))}); pass goal top-k or top-1")
    if goal == "top-k" and target is None:
        raise FameError("goal top-k needs a target item; pass target= (or --user, whose test item it is)")
    top_k = max(k, 20)
    before = inspect(model, sequence, target, top_k=top_k)
    seq = tuple(int(v) for v in np.asarray(sequence).reshape(-1))
    H = cfg.n_heads
    gated = before.top["gated"]
    goal_head = top_item = runner_up = kth_item = None
    if goal == "flip-gate":
        order = np.argsort(-before.gates, kind="stable")
        goal_head = int(order[1]) if head is None else int(head)
        if not 0 <= goal_head < H:
            raise ConfigError(f"head {head}: this model has heads 0..{H - 1}")
        if goal_head == int(order[0]):
            raise ConfigError(f"head {goal_head}'s gate is already the largest; pass another head")
    elif goal == "top-1":
        top_item, runner_up = int(gated[0]), int(gated[1])
    else:
        kth_item = int([v for v in gated if v != target][k - 1]) if len(gated) > k else int(gated[-1])
    result = dict(goal=goal, k=k, budget=budget, target=None if target is None else int(target), sequence=list(seq),
                  before=before.to_dict(k), goal_head=goal_head, top_item=top_item)
    if goal == "top-k" and before.target_rank["gated"] <= k:
        return Counterfactual(found=True, message=f"target {target} is already ranked {before.target_rank['gated']} "
                              f"(top {k}); no edit needed", edited=list(seq), edits=[], after=before.to_dict(k),
                              verified=True, seconds=time.perf_counter() - t0, **result)
    # the catalogue items tried
    left_out = {0, target} if goal == "top-k" else {0, top_item} if goal == "top-1" else {0}
    if isinstance(candidates, (int, np.integer)) and not isinstance(candidates, bool):
        half = max(1, int(candidates) // 2)
        pool = [int(v) for v in gated[:half]]
        if goal == "top-k":
            pool += _neighbours(model, int(target), half, left_out)
        elif goal == "top-1":
            pool += _neighbours(model, runner_up, half, left_out)
        else:
            hs = before.head_scores[goal_head].copy() if before.head_scores is not None else None
            if hs is not None:
                hs[list(before.excluded) + [0]] = -np.inf
                pool += np.argsort(-hs, kind="stable")[:half].tolist()
    else:
        pool = [int(v) for v in candidates]
        bad = [v for v in pool if not 1 <= v <= cfg.n_items]
        if bad:
            raise FameError(f"candidate item {bad[0]} is not an item of this model (ids 1..{cfg.n_items})")
    pool = list(dict.fromkeys(v for v in pool if v not in left_out))
    scorer = _Goal(model, goal, k, target, goal_head, top_item, runner_up, kth_item)

    def expand(state_seq):
        lo = max(0, len(state_seq) - cfg.max_len)
        visible = range(lo, len(state_seq))
        att = scorer.attribution(state_seq)                 # (visible,)
        worst = [lo + int(j) for j in np.argsort(att, kind="stable")[:positions]]
        out = []
        if len(state_seq) > 1:
            out += [{"op": "remove", "position": p, "item": state_seq[p]} for p in visible]
        for p in worst:
            out += [{"op": "replace", "position": p, "item": v, "old": state_seq[p]} for v in pool if v != state_seq[p]]
        for p in [len(state_seq)] + worst:
            out += [{"op": "insert", "position": p, "item": v} for v in pool]
        return out

    states = [(seq, [])]
    seen = {seq}
    searched = 0
    best = None
    for depth in range(1, budget + 1):
        children = []
        for state_seq, edits in states:
            for e in expand(state_seq):
                new = apply_edit(state_seq, e)
                if new not in seen:
                    seen.add(new)
                    children.append((new, edits + [e]))
        if not children:
            break
        margins = scorer.margins([c[0] for c in children])
        searched += len(children)
        reached = [i for i in np.flatnonzero(margins > 0)]
        reached.sort(key=lambda i: (KIND_ORDER[children[i][1][-1]["op"]], -margins[i]))
        for i in reached[:10]:
            new, edits = children[i]
            after = inspect(model, list(new), target, top_k=top_k)
            if _holds(goal, after, k, goal_head, top_item):
                return Counterfactual(found=True, message=_found_message(goal, edits, after, k, target, goal_head,
                                                                         top_item),
                                      edited=list(new), edits=edits, after=after.to_dict(k), verified=True,
                                      searched=searched, seconds=time.perf_counter() - t0, **result)
        keep = np.argsort(-margins, kind="stable")[:beam]
        states = [children[i] for i in keep]
        if best is None or margins[keep[0]] > best["margin"]:
            best = {"edits": children[keep[0]][1], "edited": list(children[keep[0]][0]), "margin": float(margins[keep[0]])}
    what = {"top-k": f"brings target {target} into the top {k} (it is ranked {before.target_rank['gated'] if target else '-'})",
            "flip-gate": f"makes head {goal_head}'s gate the largest (gates {_rounded(before.gates)})",
            "top-1": f"changes the top-1 item ({top_item})"}[goal]
    return Counterfactual(found=False, message=f"no edit of at most {budget} (removals, and replacements and "
                          f"insertions from {len(pool)} candidate items) {what}", edited=None, edits=[], after=None,
                          best=best, searched=searched, seconds=time.perf_counter() - t0, **result)


def _holds(goal, insp, k, goal_head, top_item) -> bool:
    if goal == "top-k":
        return insp.target_rank["gated"] <= k
    if goal == "flip-gate":
        return int(np.argmax(insp.gates)) == goal_head
    return int(insp.top["gated"][0]) != top_item


def _rounded(gates) -> list[float]:
    return [round(float(g), 3) for g in gates]


def _found_message(goal, edits, after, k, target, goal_head, top_item) -> str:
    one = len(edits) == 1
    n = f"{len(edits)} edit{'' if one else 's'}"
    if goal == "top-k":
        return f"{n} {'brings' if one else 'bring'} target {target} to rank {after.target_rank['gated']} (top {k})"
    if goal == "flip-gate":
        return f"{n} {'makes' if one else 'make'} head {goal_head}'s gate the largest (gates {_rounded(after.gates)})"
    return f"{n} {'changes' if one else 'change'} the top-1 item from {top_item} to {int(after.top['gated'][0])}"


__all__ = ["Counterfactual", "counterfactual", "apply_edit", "GOALS"]
