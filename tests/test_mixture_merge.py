"""bench/mixture_merge.py: a gated FAME's test targets ranked by the gate-weighted logits (the
model's own ranking, as the evaluator gives it) and by the probability mixture sum_h g_h softmax_h,
the latter checked against a direct computation for every user."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fame_core.evaluate import evaluate
from tests.conftest import bench_module, make_model

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "mixture_merge.py"


def _module():
    return bench_module("mixture_merge")


@pytest.mark.fast
def test_gated_ranks_are_the_evaluators_and_mixture_ranks_are_the_mixture_of_head_softmaxes(tiny_world):
    model = make_model("fame", n_items=tiny_world.n_items)
    ranks = _module().merge_ranks(model, tiny_world, batch=37)          # batches that do not divide the users
    for merge in ("gated", "concat"):
        assert np.array_equal(ranks[merge], evaluate(model, tiny_world, "test", merge=merge, return_ranks=True)["ranks"])
    x = model.item_sub_embeddings().detach().numpy()                    # (H, n+1, d')
    mixture = []
    with torch.no_grad():
        for row in tiny_world.splittable_rows():
            hist, target = tiny_world.example(row, "test")
            out = model(torch.as_tensor(hist[-model.config.max_len:])[None], last_only=True)
            F, g = out.heads[0, -1].numpy(), out.gates[0, -1].numpy()   # (H, d'), (H,)
            logits = np.einsum("hve,he->hv", x, F)[:, 1:]               # padding is no item
            p = np.exp(logits - logits.max(1, keepdims=True))
            score = np.log((g[:, None] * p / p.sum(1, keepdims=True)).sum(0).astype(np.float64))
            score = np.concatenate([[-np.inf], score])                  # id 0, padding: masked like the history
            score[np.asarray(hist)] = -np.inf                           # (a repeated target is a certain miss)
            mixture.append(int((score >= score[target]).sum()) - 1)     # ties count against the target
    assert np.array_equal(ranks["mixture"], mixture)
    assert not np.array_equal(ranks["mixture"], ranks["gated"]), "the two merges agreed: the check would be void"
    valid = _module().merge_ranks(model, tiny_world, "valid")             # validation targets, to choose on
    assert np.array_equal(valid["gated"], evaluate(model, tiny_world, "valid", return_ranks=True)["ranks"])


@pytest.mark.fast
def test_a_model_without_heads_to_mix_is_refused_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--data", "synthetic", str(REPO / "checkpoints" / "demo-sasrec"),
                        "--out", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()
