"""A case study as markdown: per-head top-k lists, gates, gated vs concatenated lists, the deep link.

    python bench/case_study.py --checkpoint checkpoints/sports-fame --user 230 [--data PATH] [--top-k 20]

Prints markdown for docs (the paper's Figure 7 as a table) and writes the numbers to
bench/results/case-study-<data>-user<U>.json (or --out).
"""

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    import fame_core

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--data", default=None)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--out", default=None, help="the JSON (default bench/results/case-study-<data>-user<U>.json)")
    a = p.parse_args()
    model, data = fame_core.load(a.checkpoint, data=a.data)
    if data is None:
        print("error: the case study needs the data set; pass --data PATH", file=sys.stderr)
        return 2
    seq, target = fame_core.user_example(data, a.user)
    r = fame_core.inspect(model, seq, target, top_k=a.top_k)
    H = r.n_heads
    modes = [f"head:{h}" for h in range(H)] + ["gated", "concat"]
    name = Path(a.checkpoint).name
    link = "?" + urlencode({"checkpoint": name, "user": a.user, "k": a.top_k})
    lines = [f"User {a.user} of {data.name}: {len(seq)} history items; target item {target} "
             f"({data.label(target)}).", "",
             "Gates: " + ", ".join(f"head {h} {g:.3f}" for h, g in enumerate(r.gates)) + ".", "",
             "Target rank: " + ", ".join(f"{m} {r.target_rank[m]}" for m in modes) + ".", "",
             "History (oldest first): " + ", ".join(str(int(v)) for v in r.sequence) + ".", "",
             "| rank | " + " | ".join(modes) + " |", "| --- |" + " --- |" * len(modes)]
    for i in range(a.top_k):
        cells = []
        for m in modes:
            v = int(r.top[m][i])
            cells.append(f"**{v}** (target)" if v == target else str(v))
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    lines += ["", f"Open it in the app: `streamlit run app/serve.py` then `{link}` "
                  f"(the checkpoint directory must be under checkpoints/ or a configured root)."]
    print("\n".join(lines))
    out = Path(a.out) if a.out else REPO / "bench" / "results" / f"case-study-{data.name}-user{a.user}.json"
    out.write_text(json.dumps({"checkpoint": a.checkpoint, **r.to_dict(a.top_k), "user": a.user,
                               "labels": {int(v): data.label(v) for m in modes for v in r.top[m][:a.top_k]}},
                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
