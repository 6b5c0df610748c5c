"""experiments/mixture_merge.py: a gated FAME's test targets ranked by the gate-weighted logits (the
model's own ranking, as the evaluator gives it) and by the probability mixture sum_h g_h softmax_h,
the latter checked against a direct computation for every user."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from fame_core.evaluate import evaluate
import experiments.mixture_merge
from tests.conftest import REPO, make_model

pytestmark = pytest.mark.research
SCRIPT = "experiments.mixture_merge"   # run as python -m SCRIPT from the repository root


def _module():
    return experiments.mixture_merge


def direct_mixture_ranks(model, world) -> list[int]:
    """Each test target's rank under log sum_h g_h softmax_h(v), user by user, in float64."""
    from scipy.special import logsumexp

    x = model.item_sub_embeddings().detach().double().numpy()           # (H, n+1, d')
    ranks = []
    with torch.no_grad():
        for row in world.splittable_rows():
            hist, target = world.example(row, "test")
            out = model(torch.as_tensor(hist[-model.config.max_len:])[None], last_only=True)
            F, g = out.heads[0, -1].double().numpy(), out.gates[0, -1].double().numpy()   # (H, d'), (H,)
            logits = np.einsum("hve,he->hv", x, F)[:, 1:]               # padding is no item
            log_p = logits - logsumexp(logits, axis=1, keepdims=True)
            score = logsumexp(np.log(g)[:, None] + log_p, axis=0)
            score = np.concatenate([[-np.inf], score])                  # id 0, padding: masked like the history
            score[np.asarray(hist)] = -np.inf                           # (a repeated target is a certain miss)
            ranks.append(int((score >= score[target]).sum()) - 1)       # ties count against the target
    return ranks


def test_the_mixture_does_not_underflow_into_ties_far_down_the_list(tiny_world):
    model = make_model("fame", n_items=tiny_world.n_items)
    with torch.no_grad():
        model.embed.E.weight.mul_(1000.0)    # logit gaps of hundreds: most softmax terms underflow in float32
    direct = direct_mixture_ranks(model, tiny_world)
    ranks = _module().merge_ranks(model, tiny_world)
    assert np.array_equal(ranks["mixture"], direct)
    # the sum of float32 probabilities (the earlier formula, floored at 1e-30) ties far-down items: the
    # check above is not void for this model
    with torch.no_grad():
        hist, target = tiny_world.example(tiny_world.splittable_rows()[0], "test")
        out = model(torch.as_tensor(hist[-model.config.max_len:])[None], last_only=True)
        p = (out.gates[:, -1, :, None] * torch.softmax(model.head_scores(out)[..., 1:], -1)).sum(1)
    assert (p < 1e-30).sum() > 10, "no underflow: the test would not see the difference"


def test_gated_ranks_are_the_evaluators_and_mixture_ranks_are_the_mixture_of_head_softmaxes(tiny_world):
    model = make_model("fame", n_items=tiny_world.n_items)
    ranks = _module().merge_ranks(model, tiny_world, batch=37)          # batches that do not divide the users
    for merge in ("gated", "concat"):
        assert np.array_equal(ranks[merge], evaluate(model, tiny_world, "test", merge=merge, return_ranks=True)["ranks"])
    mixture = direct_mixture_ranks(model, tiny_world)
    assert np.array_equal(ranks["mixture"], mixture)
    assert not np.array_equal(ranks["mixture"], ranks["gated"]), "the two merges agreed: the check would be void"
    valid = _module().merge_ranks(model, tiny_world, "valid")             # validation targets, to choose on
    assert np.array_equal(valid["gated"], evaluate(model, tiny_world, "valid", return_ranks=True)["ranks"])


def test_a_model_without_heads_to_mix_is_refused_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", SCRIPT, "--data", "synthetic", str(REPO / "checkpoints" / "demo-sasrec"),
                        "--out", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()
