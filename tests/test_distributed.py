"""Two CPU processes (gloo, DistributedDataParallel) against one with the same global batch.

Tolerances (stated in docs/scaling.md): with dropout 0 the two runs differ only in the order of
floating-point sums (gradients averaged over processes, batches split in two), so every epoch's
loss agrees to 1e-4 relative, and the final validation and test metrics to 1e-3 absolute (a
near-tie can flip one user's rank: one user moves a metric by at most 1/users = 0.004 here, and
none moved in the measured runs).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from fame_core.data import load_dataset
from fame_core.models import FAMEConfig
from fame_core.training import TrainConfig, train

WORLD = "synthetic:seed=5,n_users=200,n_items=50,genre=4,actor=6,min_len=4,max_len=12"
TIMEOUT_S = 150


def _config(loss="full"):
    mcfg = FAMEConfig(n_items=50, d=16, n_heads=2, n_experts=2, max_len=10, dropout=0.0,
                       attn_dropout=0.0)
    return mcfg, TrainConfig(epochs=2, batch_size=48, seed=3, lr=3e-3, loss=loss, negatives=8, device="cpu")


def _worker(rank, world, port, out, loss, stop_after, resume):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    import torch
    torch.set_num_threads(1)
    mcfg, tcfg = _config(loss)
    result = train(load_dataset(WORLD), mcfg, tcfg, out, progress=False, stop_after=stop_after, resume=resume)
    if rank == 0:
        with open(os.path.join(os.path.dirname(out), f"result-{os.path.basename(out)}.json"), "w") as f:
            json.dump(result, f)


def _nan_worker(rank, world, port, out):
    """Rank 1's loss turns NaN at its second step; each rank writes what stopped it."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    import torch

    import fame_core.training as training
    from fame_core.errors import FameError

    torch.set_num_threads(1)
    real, calls = training.loss_on_batch, []

    def poisoned(*a, **kw):
        loss = real(*a, **kw)
        calls.append(1)
        return loss * float("nan") if rank == 1 and len(calls) == 2 else loss

    training.loss_on_batch = poisoned
    mcfg, tcfg = _config()
    try:
        train(load_dataset(WORLD), mcfg, tcfg, out, progress=False)
        what = "finished"
    except FameError as e:
        what = str(e)
    Path(out).parent.joinpath(f"stopped-{rank}.txt").write_text(what)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_and_wait(worker, args, world: int, hang_message: str) -> None:
    """mp.spawn `world` processes of worker(rank, *args); fail the test if they outlive TIMEOUT_S."""
    # spawned workers re-run the parent's __main__ file; in a pytest session that ran streamlit's
    # AppTest it can be the app script, which does not import here: spawn from a bare __main__
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        ctx = mp.spawn(worker, args=args, nprocs=world, join=False)
    finally:
        sys.modules["__main__"] = main
    deadline = time.monotonic() + TIMEOUT_S
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(hang_message)


def run_processes(out, world=2, loss="full", stop_after=None, resume=False) -> dict:
    spawn_and_wait(_worker, (world, _free_port(), str(out), loss, stop_after, resume), world,
                   f"{world} processes did not finish within {TIMEOUT_S} s")
    return json.loads((out.parent / f"result-{out.name}.json").read_text())


def test_a_nan_loss_on_one_process_stops_every_process_at_the_same_step(tmp_path):
    """Without agreement, rank 0 fails inside the gradient all-reduce that rank 1 never joins
    (gloo: 'Connection closed by peer', a traceback; NCCL can wait until its timeout)."""
    spawn_and_wait(_nan_worker, (2, _free_port(), str(tmp_path / "run")), 2,
                   "a NaN on rank 1 left the other process waiting")
    said = [(tmp_path / f"stopped-{r}.txt").read_text() for r in (0, 1)]
    assert said[1].startswith("loss became nan in epoch 1, step 2;")
    assert said[0].startswith("the loss of another of the 2 processes became non-finite in epoch 1, step 2;")
    assert all("lower --lr and pass --resume" in s for s in said)


def log(d):
    return [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]


def close(a: dict, b: dict, tol: float) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= tol for k in a)


def compare(one_dir, two_dir, one, two):
    """The stated tolerances; returns the largest differences seen (for the docs)."""
    diffs = {"loss_rel": 0.0, "metric_abs": 0.0}
    for a, b in zip(log(one_dir), log(two_dir), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert close(a["valid"], b["valid"], 1e-3)
        diffs["loss_rel"] = max(diffs["loss_rel"], abs(a["loss"] - b["loss"]) / abs(a["loss"]))
    for split in ("valid", "test"):
        assert close(one[split], two[split], 1e-3)
        diffs["metric_abs"] = max([diffs["metric_abs"]] + [abs(one[split][k] - two[split][k]) for k in one[split]])
    print("largest differences 1 vs 2 processes:", diffs)
    return diffs


def _descendants(pid: int) -> list[int]:
    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parents[int(d)] = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        node = todo.pop()
        kids = [c for c, p in parents.items() if p == node]
        out += kids
        todo += kids
    return out


def _rank_of(pid: int):
    try:
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return None
    ranks = [e[5:].decode() for e in env if e.startswith(b"RANK=")]
    return int(ranks[0]) if ranks and "fame_core" in open(f"/proc/{pid}/cmdline").read() else None


def torchrun(out, *extra, epochs=4):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "fame_core", "train", "--data", WORLD, "--model", "fame", "--heads", "2", "--experts", "2",
           "--hidden", "16", "--max-len", "10", "--dropout", "0", "--epochs", str(epochs), "--batch-size", "48",
           "--seed", "3", "--lr", "3e-3", "--device", "cpu", "--out", str(out), "--json", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=Path(__file__).resolve().parents[1])


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through /proc")
def test_killing_rank_1_then_resuming_with_torchrun_matches_one_uninterrupted_process(tmp_path):
    out = tmp_path / "two"
    run = torchrun(out)
    deadline = time.monotonic() + TIMEOUT_S
    while not (out / "metrics.jsonl").exists():              # rank 0 wrote epoch 1
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[1][-2000:]
        time.sleep(0.05)
    workers = {r: p for p in _descendants(run.pid) if (r := _rank_of(p)) is not None}
    assert sorted(workers) == [0, 1], workers
    for p in workers.values():                               # freeze the run, then kill rank 1
        os.kill(p, signal.SIGSTOP)
    written = len(log(out))
    os.kill(workers[1], signal.SIGKILL)
    for p in workers.values():
        if p != workers[1]:
            os.kill(p, signal.SIGCONT)
    _, err = run.communicate(timeout=TIMEOUT_S)
    assert run.returncode != 0 and 1 <= written < 4 and (out / "train_state.pt").exists()
    resumed = torchrun(out, "--resume")
    stdout, err = resumed.communicate(timeout=TIMEOUT_S)
    assert resumed.returncode == 0, err[-2000:]
    two = json.loads(stdout)
    mcfg, tcfg = _config()
    one = train(load_dataset(WORLD), mcfg, replace(tcfg, epochs=4), tmp_path / "one", progress=False)
    assert two["status"] == one["status"] == "finished" and two["epochs"] == one["epochs"] == 4
    assert [m["epoch"] for m in log(out)] == [1, 2, 3, 4]
    compare(tmp_path / "one", out, one, two)
    assert log(tmp_path / "one")[0]["loss"] > log(tmp_path / "one")[-1]["loss"]   # it learned something
    # rank 0 alone wrote: one checkpoint each, no stray temporary folders
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_two_processes_draw_the_same_sampled_softmax_candidates_as_one(tmp_path):
    two = run_processes(tmp_path / "two", loss="sampled")
    mcfg, tcfg = _config("sampled")
    one = train(load_dataset(WORLD), mcfg, tcfg, tmp_path / "one", progress=False)
    compare(tmp_path / "one", tmp_path / "two", one, two)
