"""How far is the sampled softmax from the full one on Beauty?

    python -m experiments.sampled_beauty --gradients                    # the check in docs/scaling.md
    python -m experiments.sampled_beauty --epochs 200 --patience 10     # the full-length training run to queue

--gradients: on the bundled Beauty SASRec checkpoint (trained with the full softmax) and on a
fresh initialisation, for --batches training batches (dropout off, seed 0): the gradient of the
sampled loss for each --negatives against the full softmax's over all parameters (cosine and
relative distance |g_s - g_f| / |g_f|) and both loss values; writes
experiments/results/sampled-beauty-gradients.json.

Otherwise trains SASRec (the paper's settings: d 64, 2 layers, 2 heads, max_len 50, dropout 0.5, batch
256, lr 1e-3) once with --loss full and once per --negatives with --loss sampled, each from the
same seed, into runs/sampled-beauty/, and writes experiments/results/sampled-beauty-<model>-e<epochs>.json:
per run the best validation epoch's validation and test metrics, seconds per epoch, and the
difference to the full softmax. Repeat the command after a kill: a finished run is read back, an
interrupted one resumed (its train_state.pt), nothing is replaced. --full DIR reuses a finished
full-softmax checkpoint of the same settings (e.g. the ablation's sasrec-s0) instead of training it
again; its seconds per epoch were measured under another load, so only the metrics compare.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "amazon" / "Beauty.txt"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.sampled_beauty", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--model", choices=["sasrec", "fame"], default="sasrec")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--negatives", default="1024", help="comma-separated numbers of uniform negatives")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO / "runs" / "sampled-beauty"))
    p.add_argument("--gradients", action="store_true", help="compare gradients instead of training")
    p.add_argument("--device", default="cpu", help="cpu (default, as measured so far), cuda or auto")
    p.add_argument("--full", default=None, help="a finished full-softmax checkpoint of the same settings to reuse")
    p.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "beauty-sasrec"))
    p.add_argument("--batches", type=int, default=6)
    a = p.parse_args(argv)
    if a.gradients:
        return gradients(a, argv)

    import torch

    from fame_core.data import load_dataset
    from fame_core.models import model_config
    from fame_core.training import TrainConfig

    from fame_core.errors import FameError

    try:
        data = load_dataset(a.data)
    except FameError as e:
        fail(str(e))
    runs = [("full", 0)] + [("sampled", int(k)) for k in a.negatives.split(",")]
    results, t_start, load_start = {}, time.time(), os.getloadavg()
    for loss, k in runs:
        name = "full" if loss == "full" else f"sampled-{k}"
        mcfg = model_config(a.model, n_items=data.n_items, d=64, n_layers=2, n_heads=2, max_len=50, dropout=0.5,
                            attn_dropout=0.5, **({} if a.model == "sasrec" else {"n_experts": 4}))
        tcfg = TrainConfig(epochs=a.epochs, patience=a.patience, seed=a.seed, device=a.device, loss=loss,
                           negatives=k or 1024)
        out = Path(a.full) if (a.full and loss == "full") else Path(a.out) / f"{a.model}-e{a.epochs}-{name}"
        r = reused(out, mcfg, tcfg) if loss == "full" and a.full else run(data, mcfg, tcfg, out)
        results[name] = {k2: r[k2] for k2 in ("best_epoch", "epochs", "valid", "test", "seconds_per_epoch")}
        print(name, "valid NDCG@20 %.4f test NDCG@20 %.4f HR@10 %.4f  %.1f s/epoch" % (
            r["valid"]["NDCG@20"], r["test"]["NDCG@20"], r["test"]["HR@10"], r["seconds_per_epoch"]), flush=True)
    full = results["full"]
    for name, r in results.items():
        r["test_minus_full"] = {m: r["test"][m] - full["test"][m] for m in full["test"]}
        r["test_relative_to_full"] = {m: r["test"][m] / full["test"][m] - 1 for m in full["test"] if full["test"][m]}
    out = REPO / "experiments" / "results" / f"sampled-beauty-{a.model}-e{a.epochs}.json"
    out.write_text(json.dumps({
        "command": "python -m experiments.sampled_beauty " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": a.data, "model": a.model, "epochs": a.epochs, "seed": a.seed, "runs": results,
        "torch_threads": torch.get_num_threads(), "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        "wall_seconds": round(time.time() - t_start, 1),
        "note": (f"trained to early stopping (at most {a.epochs} epochs, patience {a.patience} on validation NDCG@20), "
                 "same seed; seconds per epoch depend on what ran beside each run" if a.epochs >= 50 else
                 "short check: a fixed number of epochs for every run, same seed; not converged")}, indent=2) + "\n")
    print("wrote", out)
    return 0


def fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def differences(record: dict, mcfg, tcfg, ignore=()) -> str:
    """How a finished run's recorded settings differ from these ('' when they are the same); a
    setting added to the code after the run was recorded counts as its default."""
    from dataclasses import asdict

    from fame_core.objectives import FacetObjectives
    from fame_core.training import TrainConfig, record_differences, saved_train_record, train_record

    model = {**{k: v for k, v in asdict(type(mcfg)()).items()}, "model": mcfg.name, **record.get("model", {})}
    saved = saved_train_record(record.get("train", {}))
    train_saved = {**train_record(TrainConfig()), **saved,
                   "objectives": {**asdict(FacetObjectives()), **saved.get("objectives", {})}}
    train_saved["objectives"] = json.loads(json.dumps(train_saved["objectives"]))
    return ", ".join(d for d in (record_differences(model, {**model, **mcfg.to_dict(), "n_items": model.get("n_items")},
                                                    prefix="model."),
                                 record_differences(train_saved, train_record(tcfg),
                                                    ignore=("device", "eval_batch_size", *ignore), prefix="train."))
                     if d)


def run(data, mcfg, tcfg, out: Path) -> dict:
    """Train into `out`, or read a finished run of the same settings back, or resume an interrupted one."""
    from fame_core.training import train

    if (out / "config.json").exists() and not (out / "train_state.pt").exists():
        record = json.loads((out / "config.json").read_text())
        changed = differences(record, mcfg, tcfg)
        if changed:
            fail(f"{out} holds a finished run with other settings ({changed}); pass another --out")
        return record
    resume = (out / "train_state.pt").exists()
    print(f"{time.strftime('%H:%M:%S')} {'resuming' if resume else 'training'} {out}", file=sys.stderr, flush=True)
    return train(data, mcfg, tcfg, out, resume=resume, progress=sys.stderr.isatty())


def reused(out: Path, mcfg, tcfg) -> dict:
    """A finished full-softmax run's record, if it was trained with these settings (the number of
    negatives aside, which the full softmax does not use)."""
    path = out / "config.json"
    if not path.exists() or (out / "train_state.pt").exists():
        fail(f"--full {out} is not a finished checkpoint; pass a finished run's folder or leave --full out")
    r = json.loads(path.read_text())
    changed = differences(r, mcfg, tcfg, ignore=("negatives",))
    if changed:
        fail(f"--full {out} was trained with other settings ({changed}); pass a full-softmax run of these settings")
    return r


def gradients(a, argv) -> int:
    import numpy as np
    import torch

    from fame_core.checkpoint import load_checkpoint
    from fame_core.data import load_dataset
    from fame_core.evaluate import left_pad
    from fame_core.models import build_model
    from fame_core.sampled import InBatchUniformSampler
    from fame_core.training import epoch_batches, loss_on_batch, training_pairs

    data = load_dataset(a.data)
    trained = load_checkpoint(a.checkpoint).float()
    torch.manual_seed(0)
    fresh = build_model(trained.config)
    pairs = training_pairs(data, trained.config.max_len)
    rng = np.random.default_rng(0)
    batches = epoch_batches(pairs, 256, rng)[:a.batches]
    ks = [int(k) for k in a.negatives.split(",")]
    samplers = {k: InBatchUniformSampler.from_pairs(pairs, data.n_items, k) for k in ks}
    t0, load_start = time.time(), os.getloadavg()
    out = {}
    for name, model in (("trained", trained), ("fresh", fresh)):
        model.eval()                      # no dropout: the same forward for every loss
        rows = {k: {"cosine": [], "relative_distance": [], "loss": []} for k in ks}
        full_loss = []
        for step, idx in enumerate(batches):
            inputs = left_pad([pairs[i][0] for i in idx], trained.config.max_len)
            targets = left_pad([pairs[i][1] for i in idx], trained.config.max_len)

            def grad(candidates):
                model.zero_grad(set_to_none=True)
                loss = loss_on_batch(model, inputs, targets, candidates=candidates)
                loss.backward()
                return loss.item(), torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
            lf, gf = grad(None)
            full_loss.append(lf)
            for k in ks:
                ls, gs = grad(samplers[k].candidates(np.concatenate([pairs[i][1] for i in idx]), [0, 0, step]))
                rows[k]["cosine"].append(float(torch.nn.functional.cosine_similarity(gs, gf, dim=0)))
                rows[k]["relative_distance"].append(float((gs - gf).norm() / gf.norm()))
                rows[k]["loss"].append(ls)
            print(name, "batch", step, "full loss %.4f" % lf, " ".join(
                f"K={k}: cos {rows[k]['cosine'][-1]:.4f}" for k in ks), flush=True)
        out[name] = {"full_loss_mean": float(np.mean(full_loss)), "by_negatives": {
            str(k): {m: float(np.mean(v)) for m, v in r.items()} | {"cosine_min": float(min(r["cosine"]))}
            for k, r in rows.items()}}
    path = REPO / "experiments" / "results" / "sampled-beauty-gradients.json"
    path.write_text(json.dumps({
        "command": "python -m experiments.sampled_beauty " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": a.data, "checkpoint": a.checkpoint, "batches": len(batches), "n_items": data.n_items,
        "method": "gradient over all parameters of the batch's mean loss, dropout off; sampled: candidates = "
                  "distinct batch targets + K uniform items, logQ-corrected (fame_core/sampled.py)",
        "results": out, "torch_threads": torch.get_num_threads(), "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(), "wall_seconds": round(time.time() - t0, 1)}, indent=2) + "\n")
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
