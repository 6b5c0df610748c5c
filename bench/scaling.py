"""Scaling curves on this machine (issue 18): users 10^4 -> 10^6, items 10^3 -> 10^6.

    python bench/scaling.py                 # the grid of docs/scaling.md, then the figures
    python bench/scaling.py --plot-only     # redraw docs/scaling-*.png/svg from the JSON

Every configuration (model x loss x users x items x processes) runs in its own process, so its
peak resident memory is its own, and measures:

- seconds per epoch: mean of `--batches` timed training steps (forward, loss, backward, Adam;
  after one untimed warm-up step) on batches drawn from a real epoch's batches (batch 256,
  length-bucketed as in training), times the epoch's number of batches (extrapolated, stated);
- evaluation seconds: full ranking (history masked, items in chunks of ranking.ITEM_CHUNK) of
  `--eval-users` users, times users / eval-users (extrapolated);
- peak memory: the process's peak resident set (ru_maxrss), and that after making the world
  (the data's own share); with 2 processes the sum over both.

Worlds come from `fame_core.synthetic.make_facet_world(seed=0, ...)` and are cached as .npz under
runs/scaling-worlds/ (made once, by the first configuration that needs them). A configuration
whose full-softmax logits (largest batch's targets x items x 4 bytes, x3 for the softmax, its
gradient and the logits' gradient) would pass --mem-limit-gib is skipped, with that reason.
Models: the paper's settings (d 64, 2 layers, 2 heads, max_len 50; FAME 4 experts).
Writes bench/results/scaling.json (with load averages and what else ran) and the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
WORLDS = REPO / "runs" / "scaling-worlds"
RESULT = REPO / "bench" / "results" / "scaling.json"
BATCH = 256


def grid(full: bool = True) -> list[dict]:
    """The configurations of docs/scaling.md."""
    out = []
    for model in ("sasrec", "fame"):
        for loss in ("full", "sampled"):
            for items in (10**3, 10**4, 10**5, 10**6):             # items axis at 10^4 users
                out.append(dict(model=model, loss=loss, users=10**4, items=items, procs=1))
            for users in (10**5, 10**6):                            # users axis at 10^4 items
                out.append(dict(model=model, loss=loss, users=users, items=10**4, procs=1))
        for users, items, loss in ((10**4, 10**4, "full"), (10**5, 10**4, "full"), (10**4, 10**5, "sampled")):
            out.append(dict(model=model, loss=loss, users=users, items=items, procs=2))
    return out


# ------------------------------------------------------------------------------------------ worlds
def world_path(users: int, items: int) -> Path:
    return WORLDS / f"world-u{users}-i{items}.npz"


def load_world(users: int, items: int):
    """The synthetic world (seed 0), from the cache or made and cached; returns (dataset, seconds to make)."""
    import numpy as np

    from fame_core.data import SequenceDataset
    path = world_path(users, items)
    made = None
    if not path.exists():
        from fame_core.synthetic import make_facet_world
        t = time.perf_counter()
        world = make_facet_world(seed=0, n_users=users, n_items=items)
        made = time.perf_counter() - t
        lengths = np.array([len(s) for s in world.sequences], dtype=np.int64)
        WORLDS.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}.npz")
        np.savez(tmp, items=np.concatenate(world.sequences), lengths=lengths, make_seconds=made)
        os.replace(tmp, path)
        del world
    z = np.load(path)
    cuts = np.cumsum(z["lengths"])[:-1]
    seqs = np.split(z["items"], cuts)
    ds = SequenceDataset(name=f"synthetic-u{users}-i{items}", sequences=seqs, n_items=items,
                         user_ids=[str(i + 1) for i in range(users)])
    return ds, float(z["make_seconds"]) if made is None else made


# ------------------------------------------------------------------------------------------ one measurement
def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # KiB on Linux


def measure(cfg: dict, rank: int = 0, world: int = 1) -> dict:
    import numpy as np
    import torch

    from fame_core import distributed
    from fame_core.evaluate import rank_sequences, left_pad
    from fame_core.models import build_model, model_config
    from fame_core.sampled import InBatchUniformSampler
    from fame_core.training import epoch_batches, loss_on_batch, training_pairs

    data, make_seconds = load_world(cfg["users"], cfg["items"])
    rss_data = _rss_gib()
    pairs = training_pairs(data, 50)
    rng = np.random.default_rng(0)
    batches = epoch_batches(pairs, BATCH, rng)
    largest = max(sum(len(pairs[i][1]) for i in b) for b in batches)
    torch.manual_seed(0)
    mcfg = model_config(cfg["model"], n_items=cfg["items"], d=64, n_layers=2, n_heads=2, max_len=50, dropout=0.5,
                        attn_dropout=0.5, **({"n_experts": 4} if cfg["model"] == "fame" else {}))
    model = build_model(mcfg)
    ctx = distributed.setup(torch.device("cpu")) if world > 1 else distributed.Context()
    train_model = ctx.wrap(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = InBatchUniformSampler.from_pairs(pairs, cfg["items"], cfg["negatives"]) if cfg["loss"] == "sampled" else None
    pick = [batches[i] for i in rng.choice(len(batches), size=min(len(batches), cfg["batches"] + 1), replace=False)]
    times = []
    model.train()
    for step, idx in enumerate(pick):
        ctx.barrier()
        t = time.perf_counter()
        cand = None if sampler is None else sampler.candidates(np.concatenate([pairs[i][1] for i in idx]), [0, step])
        n_global = sum(len(pairs[i][1]) for i in idx)
        mine, weight = ctx.shard(idx)
        inputs = left_pad([pairs[i][0] for i in mine], 50)
        targets = left_pad([pairs[i][1] for i in mine], 50)
        loss = loss_on_batch(train_model, inputs, targets, candidates=cand)
        n = int((targets > 0).sum()) if weight else 0
        opt.zero_grad(set_to_none=True)
        (loss * (n * ctx.world / n_global) if ctx.active else loss).backward()
        opt.step()
        ctx.barrier()
        if step:
            times.append(time.perf_counter() - t)
    rows = data.splittable_rows()
    sub = rng.choice(rows, size=min(len(rows), cfg["eval_users"]), replace=False)
    mine = sub[ctx.rank::ctx.world]
    examples = [data.example(r, "test") for r in mine]
    ctx.barrier()
    t = time.perf_counter()
    rank_sequences(model, [x for x, _ in examples], [y for _, y in examples], batch_size=1024)
    ctx.barrier()
    eval_measured = time.perf_counter() - t
    out = {"seconds_per_batch": float(np.mean(times)), "batches_timed": len(times),
           "batches_per_epoch": len(batches), "seconds_per_epoch": float(np.mean(times)) * len(batches),
           "eval_users_timed": int(len(sub)), "eval_users": int(len(rows)),
           "eval_seconds": eval_measured * len(rows) / len(sub), "largest_batch_targets": int(largest),
           "world_make_seconds": make_seconds, "peak_rss_gib": _rss_gib(), "data_rss_gib": rss_data,
           "torch_threads": torch.get_num_threads()}
    if ctx.active:
        parts = [None] * ctx.world
        torch.distributed.all_gather_object(parts, (out["peak_rss_gib"], out["data_rss_gib"]))
        out["peak_rss_gib"] = sum(p[0] for p in parts)
        out["data_rss_gib"] = sum(p[1] for p in parts)
        ctx.close()
    return out


def _rank_main(rank: int, world: int, port: int, cfg: dict, path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    import torch
    torch.set_num_threads(1)
    out = measure(cfg, rank, world)
    if rank == 0:
        Path(path).write_text(json.dumps(out))


def run_one(cfg: dict) -> dict:
    """In this (fresh) process: one configuration, with 1 or 2 processes."""
    if cfg["procs"] == 1:
        return measure(cfg)
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = WORLDS / f"result-{os.getpid()}.json"
    load_world(cfg["users"], cfg["items"])          # made once, before the ranks read it
    mp.spawn(_rank_main, args=(cfg["procs"], port, cfg, str(path)), nprocs=cfg["procs"], join=True)
    out = json.loads(path.read_text())
    path.unlink()
    return out


# ------------------------------------------------------------------------------------------ the grid
def predicted_logits_gib(cfg: dict) -> float:
    """Full softmax: one chunk of logits (fame_core/fused_ce.py, issue 43; before it, 3 x the largest
    batch's targets x items x 4 bytes, which skipped 10^6 items)."""
    from fame_core.fused_ce import LOGITS_BUDGET
    return 2 * LOGITS_BUDGET / 2**30 if cfg["loss"] == "full" else 0.0


def predicted_make_seconds(users: int, items: int) -> float:
    """0 for a cached world; else the 10^4-user world's measured making time x users / 10^4."""
    import numpy as np
    if world_path(users, items).exists():
        return 0.0
    small = world_path(10**4, items)
    return float(np.load(small)["make_seconds"]) * users / 10**4 if small.exists() else 0.0


def others_running() -> list[str]:
    """Processes using CPU besides this bench (what else ran), from ps."""
    try:
        ps = subprocess.run(["ps", "-eo", "pcpu,ni,comm", "--sort=-pcpu"], capture_output=True, text=True, timeout=10)
        return [" ".join(line.split()) for line in ps.stdout.splitlines()[1:8]]
    except (OSError, subprocess.SubprocessError):
        return []


def run_grid(a) -> None:
    results = json.loads(RESULT.read_text())["runs"] if RESULT.exists() else []   # measured ones are kept
    done = {json.dumps(r["config"], sort_keys=True) for r in results}
    for cfg in grid():
        cfg = dict(cfg, batches=a.batches, eval_users=a.eval_users, negatives=a.negatives)
        if a.only and not all(str(cfg.get(k)) == v for k, v in (x.split("=") for x in a.only.split(","))):
            continue
        key = json.dumps(cfg, sort_keys=True)
        if key in done:
            continue
        record = {"config": cfg, "loadavg_before": os.getloadavg(), "others_before": others_running()}
        make = predicted_make_seconds(cfg["users"], cfg["items"])
        if make > a.timeout:
            record["skipped"] = (f"making the world would take about {make:.0f} s here (measured for 10^4 users, "
                                 f"linear in users; > --timeout {a.timeout})")
        elif predicted_logits_gib(cfg) > a.mem_limit_gib:
            record["skipped"] = (f"full-softmax logits alone need about {predicted_logits_gib(cfg):.0f} GiB "
                                 f"(> --mem-limit-gib {a.mem_limit_gib})")
        else:
            t = time.time()
            try:
                p = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)], capture_output=True,
                                   text=True, timeout=a.timeout)
                if p.returncode == 0:
                    record.update(json.loads(p.stdout.strip().splitlines()[-1]))
                else:
                    record["failed"] = (p.stderr.strip().splitlines() or ["?"])[-1][:300]
            except subprocess.TimeoutExpired:
                record["skipped"] = f"did not finish within --timeout {a.timeout} s"
            record["wall_seconds"] = round(time.time() - t, 1)
        record["loadavg_after"] = os.getloadavg()
        print(json.dumps({k: v for k, v in record.items() if not k.startswith("others")}), flush=True)
        results.append(record)
        done.add(key)
        write(results, a)


def write(results, a) -> None:
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({
        "command": "python bench/scaling.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "method": ("seconds_per_epoch = mean of timed training steps x batches per epoch; eval_seconds = "
                   "seconds to rank eval_users_timed users x eval_users / eval_users_timed; peak_rss_gib = "
                   "ru_maxrss of the measuring process(es); 2 processes: gloo on CPU, 1 torch thread each"),
        "runs": results}, indent=1) + "\n")


# ------------------------------------------------------------------------------------------ figures and table
def growth(xs, ys) -> float:
    """Slope of log y against log x (least squares): the exponent of y ~ x^k."""
    import numpy as np
    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.log10(xs), np.log10(ys), 1)[0])


def plot() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams["svg.fonttype"] = "none"   # editable text in the SVG
    runs = [r for r in json.loads(RESULT.read_text())["runs"] if "seconds_per_epoch" in r]
    measures = [("seconds_per_epoch", "seconds per epoch"), ("eval_seconds", "evaluation seconds (all users)"),
                ("peak_rss_gib", "peak memory (GiB RSS)")]
    for axis, fixed, label in (("items", ("users", 10**4), "items (10^4 users)"),
                               ("users", ("items", 10**4), "users (10^4 items)")):
        fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
        for ax, (key, title) in zip(axes, measures):
            for model, colour in (("sasrec", "tab:blue"), ("fame", "tab:orange")):
                for loss, style in (("full", "-"), ("sampled", "--")):
                    pts = sorted((r["config"][axis], r[key]) for r in runs if r["config"]["model"] == model
                                 and r["config"]["loss"] == loss and r["config"]["procs"] == 1
                                 and r["config"][fixed[0]] == fixed[1])
                    if pts:
                        ax.plot(*zip(*pts), style, marker="o", color=colour, label=f"{model}, {loss} softmax")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_title(title)
            ax.grid(True, which="major", alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"Scaling in {axis}, 1 process, CPU (2 shared cores); log-log axes; "
                     "epoch and evaluation times extrapolated from timed batches/users", fontsize=9)
        for ext in ("png", "svg"):
            fig.savefig(REPO / "docs" / f"scaling-{axis}.{ext}", dpi=130)
        plt.close(fig)


def table() -> str:
    """The markdown table of docs/scaling.md, from the JSON."""
    runs = json.loads(RESULT.read_text())["runs"]
    lines = ["| model | loss | users | items | procs | s/epoch | eval s | peak GiB | data GiB | load avg | note |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        c = r["config"]
        if "seconds_per_epoch" in r:
            vals = f"{r['seconds_per_epoch']:.1f} | {r['eval_seconds']:.1f} | {r['peak_rss_gib']:.2f} | {r['data_rss_gib']:.2f}"
        else:
            vals = "– | – | – | –"
        note = r.get("skipped") or r.get("failed") or f"{r['batches_timed']} batches of {r['batches_per_epoch']}, " \
            f"{r['eval_users_timed']} of {r['eval_users']} users timed"
        lines.append(f"| {c['model']} | {c['loss']} | {c['users']:.0e} | {c['items']:.0e} | {c['procs']} | {vals} | "
                     f"{r['loadavg_before'][0]:.1f} | {note} |")
    return "\n".join(lines)


def growth_rates() -> list[str]:
    runs = [r for r in json.loads(RESULT.read_text())["runs"] if "seconds_per_epoch" in r and r["config"]["procs"] == 1]
    out = []
    for model in ("sasrec", "fame"):
        for loss in ("full", "sampled"):
            for axis, fixed in (("items", ("users", 10**4)), ("users", ("items", 10**4))):
                sel = sorted((r["config"][axis], r) for r in runs if r["config"]["model"] == model
                             and r["config"]["loss"] == loss and r["config"][fixed[0]] == fixed[1])
                if len(sel) >= 2:
                    xs = [x for x, _ in sel]
                    rates = {k: growth(xs, [r[k] for _, r in sel]) for k in ("seconds_per_epoch", "eval_seconds",
                                                                              "peak_rss_gib")}
                    out.append(f"| {model} | {loss} | {axis} {min(xs):.0e}–{max(xs):.0e} | "
                               + " | ".join(f"{v:.2f}" for v in rates.values()) + " |")
    return ["| model | loss | axis (range) | s/epoch ~ x^k | eval s ~ x^k | peak memory ~ x^k |",
            "|---|---|---|---:|---:|---:|"] + out


def main(argv=None) -> int:
    global RESULT
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--batches", type=int, default=3, help="timed training steps per configuration (default 3)")
    p.add_argument("--eval-users", type=int, default=2048, help="users ranked and timed (default 2048)")
    p.add_argument("--negatives", type=int, default=1024)
    p.add_argument("--mem-limit-gib", type=float, default=12.0,
                   help="skip a full softmax whose logits would pass this (default 12: half of this shared 23 GiB machine)")
    p.add_argument("--timeout", type=int, default=540, help="seconds per configuration (default 540)")
    p.add_argument("--only", default="", help="e.g. users=10000,model=sasrec")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--result", default=str(RESULT), help="the JSON to extend (default bench/results/scaling.json)")
    p.add_argument("--merge", default=None, help="add the runs of another result JSON to --result, then plot")
    a = p.parse_args(argv)
    RESULT = Path(a.result)
    if a.merge:
        mine = json.loads(RESULT.read_text())["runs"] if RESULT.exists() else []
        keys = {json.dumps(r["config"], sort_keys=True) for r in mine}
        mine += [r for r in json.loads(Path(a.merge).read_text())["runs"]
                 if json.dumps(r["config"], sort_keys=True) not in keys]
        write(mine, a)
        a.plot_only = True
    if a.one:
        print(json.dumps(run_one(json.loads(a.one))))
        return 0
    if not a.plot_only:
        run_grid(a)
    plot()
    print(table())
    print("\n".join(growth_rates()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
