"""Verdicts against the strongest simple rules (fame_core.verdicts, issue 41): known answers."""

import json

import numpy as np
import pytest

from fame_core import verdicts as V
from fame_core.attribution import attribute
from tests.conftest import make_model

fast = pytest.mark.fast


def _histories(n, H=2, seed=0):
    """Per user: shares of history items per head, the last item's head, a length."""
    rng = np.random.default_rng(seed)
    share0 = rng.beta(2, 2, n)
    shares = np.column_stack([share0, 1 - share0])[:, :H]
    last = (rng.random(n) > share0).astype(np.int64)
    length = rng.integers(2, 50, n)
    return shares, last, length


def _world(n, seed, hidden_weight):
    """Users whose better head follows the history's majority head, except where a hidden coin
    (something no history summary shows) says otherwise: hidden_weight is how often it decides."""
    rng = np.random.default_rng(seed)
    shares, last, length = _histories(n, seed=seed)
    rule = V.majority_head(shares, last)
    hidden = rng.integers(0, 2, n)
    decided_by_hidden = rng.random(n) < hidden_weight
    better = np.where(decided_by_hidden, hidden, rule)
    return shares, last, length, better, hidden, decided_by_hidden


@fast
def test_a_gate_that_copies_the_history_rule_fails_with_margin_zero():
    sv, lv, nv, bv, _, _ = _world(3000, 1, 0.3)
    st, lt, nt, bt, _, _ = _world(3000, 2, 0.3)
    rules = V.gate_rules(bv, sv, lv, nv, st, lt, nt, H=2)
    gate = V.majority_head(st, lt)                       # the gate is the rule
    v = V.gate_verdict_from(bt, gate, rules).to_dict()
    assert v["passed"] is False
    assert abs(v["margin"]) < 0.02 and v["ci95"][0] <= 0 <= v["ci95"][1]
    names = {b["name"]: b["value"] for b in v["baselines"]}
    assert v["model"] == pytest.approx(names["history's majority head"])
    assert v["test"] == V.MCNEMAR and v["split"] == "test"


@fast
def test_a_gate_that_knows_what_the_rule_cannot_see_passes():
    sv, lv, nv, bv, _, _ = _world(3000, 1, 0.5)
    st, lt, nt, bt, hidden, by_hidden = _world(3000, 2, 0.5)
    rules = V.gate_rules(bv, sv, lv, nv, st, lt, nt, H=2)
    gate = np.where(by_hidden, hidden, V.majority_head(st, lt))   # knows which users the coin decides
    v = V.gate_verdict_from(bt, gate, rules).to_dict()
    assert v["passed"] is True and v["ci95"][0] > 0 and v["p"] < 0.05
    assert v["model"] == pytest.approx(1.0)
    assert v["best_baseline"] in {b["name"] for b in v["baselines"]}
    assert v["margin"] == pytest.approx(v["model"] - max(b["value"] for b in v["baselines"]))


@fast
def test_the_verdict_json_has_exactly_the_contracts_keys():
    v = V.paired_verdict(np.array([1.0, 0.0, 1.0, 1.0]), {"a": np.array([0.0, 0.0, 1.0, 0.0])}).to_dict()
    assert list(v) == ["passed", "model", "baselines", "best_baseline", "margin", "ci95", "p", "test", "users", "split"]
    assert isinstance(v["passed"], bool) and isinstance(v["users"], int) and v["split"] == "test"
    assert all(set(b) == {"name", "value"} for b in v["baselines"]) and len(v["ci95"]) == 2
    json.dumps(v)
    r = V.Verdict.unavailable("no item facets").to_dict()
    assert r == {"passed": False, "reason": "no item facets"}
    assert V.Verdict.from_dict(v).to_dict() == v and V.Verdict.from_dict(r).to_dict() == r


@fast
def test_passed_needs_the_interval_above_zero_against_the_best_baseline():
    rng = np.random.default_rng(0)
    n = 400
    weak = (rng.random(n) < 0.3).astype(float)
    strong = (rng.random(n) < 0.6).astype(float)
    # the model beats the weak baseline by far and the strong one by a hair
    model = strong.copy()
    flip = np.flatnonzero(strong == 0)[:3]
    model[flip] = 1.0
    v = V.paired_verdict(model, {"weak": weak, "strong": strong}).to_dict()
    assert v["best_baseline"] == "strong" and v["margin"] > 0
    assert v["ci95"][0] <= 0 and v["passed"] is False
    clear = strong.copy()
    clear[np.flatnonzero(strong == 0)[:60]] = 1.0
    v = V.paired_verdict(clear, {"weak": weak, "strong": strong}).to_dict()
    assert v["passed"] is True and v["ci95"][0] > 0
    # continuous values: the Wilcoxon test is named
    v = V.paired_verdict(rng.random(50) + 1.0, {"noise": rng.random(50)}).to_dict()
    assert v["passed"] is True and v["test"] == V.WILCOXON


@fast
def test_router_read_off_passes_only_when_it_beats_the_last_item_rule():
    rng = np.random.default_rng(0)
    n, N = 2000, 4
    lv, lt = rng.integers(0, 4, n), rng.integers(0, 4, n)
    noisy_last = np.where(rng.random(n) < 0.5, lt, rng.integers(0, 4, n))
    v = V.router_verdict_from(lv, lv, lt, lt, {"last item's label": noisy_last}, n_combos=N, draws=20).to_dict()
    assert v["passed"] is True and v["model"] == 1.0
    v = V.router_verdict_from(lv, lv, lt, lt, {"last item's label": lt}, n_combos=N, draws=20).to_dict()
    assert v["passed"] is False and v["best_baseline"] == "last item's label"
    random_router = rng.integers(0, N, n)
    v = V.router_verdict_from(random_router, lv, rng.integers(0, N, n), lt, {}, n_combos=N, draws=20).to_dict()
    assert v["passed"] is False


@fast
def test_integrated_gradients_completeness_within_tolerance_on_a_hand_built_model():
    m = make_model(n_items=30, seed=3)
    seq, target = [4, 9, 17, 2, 25, 3, 8], 11
    res = attribute(m, seq, target, "gated")
    assert res.converged and res.relative_gap <= 0.01
    assert abs(res.attribution.sum() - (res.score - res.baseline_score)) <= 0.01 * abs(res.score - res.baseline_score) + 1e-6
    assert res.steps in (32, 64, 128, 256, 512)
    capped = attribute(m, seq, target, "gated", n_steps=2, step_cap=2)     # the cap is honest about the gap
    assert capped.steps == 2 and capped.converged == (capped.relative_gap <= 0.01)


@fast
def test_masking_keeps_positions_and_deleting_shifts_them():
    from fame_core.attribution import deletion_curves

    m = make_model(n_items=30, seed=1)
    res = attribute(m, [4, 9, 17, 2, 25], 11, "gated")
    masked = deletion_curves(m, res, n_random=3, mode="mask", recent=True, ranks=False)
    deleted = deletion_curves(m, res, n_random=3, mode="delete", recent=True, ranks=False)
    assert set(masked["method"]) == {"integrated gradients", "attention", "most recent first", "random"}
    recent = lambda c: c[c["method"] == "most recent first"]["score"].to_numpy()
    np.testing.assert_allclose(recent(masked), recent(deleted), atol=1e-5)   # cutting from the end: the same
    assert masked["rank"].isna().all()
    # masking a middle item keeps every other item's position; deleting it moves the older ones (positions
    # count from the right): different scores; the oldest item has nothing older, so there both agree
    from fame_core.attribution import _scores_and_ranks

    seq = np.array([4, 9, 17, 2, 25])
    score = lambda x: _scores_and_ranks(m, [np.array(x)], 11, "gated", seq, ranks=False)[0][0]
    assert abs(score([4, 9, 0, 2, 25]) - score([4, 9, 2, 25])) > 1e-4
    assert score([0, 9, 17, 2, 25]) == pytest.approx(score([9, 17, 2, 25]), abs=1e-6)


def test_a_sasrec_gets_reasons_and_a_fame_gets_all_four_verdicts(tiny_world):
    sasrec = make_model("sasrec", n_items=tiny_world.n_items)
    out = V.verdicts(sasrec, tiny_world, n_users=5)
    assert set(out) == set(V.CLAIMS)
    assert out["gate"] == {"passed": False, "reason": "a sasrec model has no gate (its score sums its heads)"}
    assert out["router"]["passed"] is False and "no router" in out["router"]["reason"]
    fame = make_model(n_items=tiny_world.n_items)
    out = V.verdicts(fame, tiny_world, n_users=5)
    for claim in V.CLAIMS:
        assert set(out[claim]) in (set(V.KEYS), {"passed", "reason"}), (claim, out[claim])
    assert set(out["gate"]) == set(V.KEYS)
    assert any("concentrated facet" in b["name"] for b in out["gate"]["baselines"])   # a planted world's rule
    assert V.verdicts(fame, tiny_world, n_users=5) == out                               # read back from the cache


def test_facets_json_carries_the_four_verdicts(capsys, tmp_path, monkeypatch):
    from fame_core.cli import main

    monkeypatch.setenv("FAME_CACHE", str(tmp_path))
    assert main(["facets", "--checkpoint", "checkpoints/demo-sasrec", "--users", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["verdicts"]) == set(V.CLAIMS)
    assert "no gate" in report["verdicts"]["gate"]["reason"] and "no router" in report["verdicts"]["router"]["reason"]
    assert set(report["verdicts"]["attention"]) == set(V.KEYS)
    assert main(["facets", "--checkpoint", "checkpoints/demo-sasrec", "--users", "3"]) == 0   # read from the cache
    out = capsys.readouterr().out
    assert "verdicts against the strongest simple rule" in out and "gate: not computed: a sasrec model" in out


def test_on_a_planted_world_an_informative_gate_passes_and_a_rule_copying_gate_fails(tiny_world):
    """Issue 41.6 on a planted world (the synthetic facet world, with its truth): the whole gate
    pipeline (cohort tables, the history's heads, the rules fitted on validation, the planted
    facet's rule) with the gate's choice replaced by (a) one that knows each test user's better
    head (information no rule has) and (b) the history's majority head (the rule itself)."""
    from fame_core import cohort

    model = make_model("fame", n_items=tiny_world.n_items, seed=5)
    tables = {s: cohort.build_table(model, tiny_world, s) for s in ("valid", "test")}
    test = tables["test"]
    better = V.better_head(test, model.config.n_heads)
    informative = dict(tables, test=test.assign(top_gate_head=np.where(better >= 0, better, 0)))
    v = V.gate_verdict(model, tiny_world, informative).to_dict()
    names = {b["name"] for b in v["baselines"]}
    assert "most concentrated facet's head (mapped on validation)" in names and "history's majority head" in names
    assert v["passed"] is True and v["ci95"][0] > 0 and v["model"] == pytest.approx(1.0)
    shares, last = V.history_heads(model, [tiny_world.example(int(r), "test")[0] for r in test["row"]])
    copying = dict(tables, test=test.assign(top_gate_head=V.majority_head(shares, last)))
    v = V.gate_verdict(model, tiny_world, copying).to_dict()
    assert v["passed"] is False and v["margin"] <= 0 and v["ci95"][0] <= 0
