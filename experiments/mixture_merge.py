"""Does ranking by the probability mixture sum_h g_h softmax(P^(h)) help a gated FAME? (issue 16)

    python -m experiments.mixture_merge --data ../shared/data/amazon/Beauty.txt \\
        checkpoints/beauty-fame-mixture checkpoints/beauty-fame

FAME ranks by the gate-weighted sum of the heads' scores (logits). A model trained with the
mixture-of-experts likelihood (`--mixture-likelihood`, cluster heads) is, for that term, a mixture
of the heads' softmaxes, so its natural ranking would be sum_h g_h softmax_h(v). This script ranks
the test (or, with --split valid, the validation) users' targets both ways (and with equal
weights) under the evaluation protocol (history masked, full ranking) and compares the two per
user (Wilcoxon signed-rank on NDCG@20). Writes JSON to --out (default
experiments/results/mixture-merge-<data>[-valid].json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
import torch  # noqa: E402


@torch.no_grad()
def merge_ranks(model, data, split: str = "test", batch: int = 256) -> dict[str, np.ndarray]:
    """0-based target ranks under "gated" (the model's), "concat" (equal weights) and "mixture"."""
    from fame_core.evaluate import left_pad, mask_items, target_ranks

    rows = data.splittable_rows()
    out_ranks = {"gated": [], "concat": [], "mixture": []}
    for s in range(0, len(rows), batch):
        ex = [data.example(r, split) for r in rows[s:s + batch]]
        histories = [np.asarray(x, dtype=np.int64) for x, _ in ex]
        targets = torch.as_tensor([t for _, t in ex])
        out = model(left_pad(histories, model.config.max_len), last_only=True)
        heads = model.head_scores(out)                                  # (B, H, n+1)
        heads[..., 0] = -torch.inf                                      # padding is no item
        # log sum_h g_h softmax_h(v), in log space: no underflow to ties far down the list
        mixture = torch.logsumexp(torch.log(out.gates[:, -1, :, None]) + torch.log_softmax(heads, -1), dim=1)
        for name, scores in (("gated", model.scores(out, "gated")), ("concat", model.scores(out, "concat")),
                             ("mixture", mixture)):
            mask_items(scores, histories)
            out_ranks[name].append(target_ranks(scores, targets).numpy())
    return {k: np.concatenate(v) for k, v in out_ranks.items()}


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def main() -> int:
    from scipy.stats import wilcoxon

    from fame_core.checkpoint import load_checkpoint
    from fame_core.data import load_dataset
    from fame_core.errors import FameError

    ap = argparse.ArgumentParser(prog="python -m experiments.mixture_merge", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="FAME checkpoints (with a gate) trained on --data")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", choices=["valid", "test"], default="test",
                    help="whose targets to rank: validation users (to choose a ranking) or test users (default)")
    ap.add_argument("--out", default=None, help="default experiments/results/mixture-merge-<data>[-valid].json")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    try:
        data = load_dataset(a.data)
        rows = []
        for path in a.checkpoints:
            model = load_checkpoint(path).eval()
            if getattr(model.config, "n_heads", 1) < 2 or model.config.model != "fame":
                raise FameError(f"{path} is not a FAME with 2+ heads; pass FAME checkpoints")
            ranks = merge_ranks(model, data, a.split)
            row = {"checkpoint": path}
            for name, r in ranks.items():
                row[name] = {"HR@10": float((r < 10).mean()), "NDCG@10": float(ndcg(r, 10).mean()),
                             "NDCG@20": float(ndcg(r, 20).mean())}
            g, m = ndcg(ranks["gated"], 20), ndcg(ranks["mixture"], 20)
            row["mixture vs gated"] = {"relative_gain": float(m.mean() / g.mean() - 1),
                                       "users_better": int((m > g).sum()), "users_worse": int((m < g).sum()),
                                       "user_wilcoxon_p": float(wilcoxon(m, g).pvalue) if (m != g).any() else 1.0}
            rows.append(row)
            print(f"{path}: NDCG@20 gated {row['gated']['NDCG@20']:.4f}, mixture {row['mixture']['NDCG@20']:.4f} "
                  f"({row['mixture vs gated']['relative_gain']:+.1%}, p {row['mixture vs gated']['user_wilcoxon_p']:.2g}), "
                  f"equal weights {row['concat']['NDCG@20']:.4f}", file=sys.stderr)
    except FameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    suffix = "" if a.split == "test" else f"-{a.split}"
    out = Path(a.out) if a.out else REPO / "experiments" / "results" / f"mixture-merge-{data.name}{suffix}.json"
    out.write_text(json.dumps({"data": data.name, "split": a.split,
                               "protocol": f"{a.split} users, history masked, full ranking",
                               "test": "Wilcoxon signed-rank over users on NDCG@20 (scipy, two-sided)",
                               "rows": rows}, indent=2) + "\n")
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
