"""Facet measures on hand-built embeddings, gates and routers whose answer is known."""

import numpy as np
import pytest
import torch

import fame_core
from fame_core import facets
from fame_core.data import SequenceDataset
from fame_core.errors import DataError
from fame_core.models import Recommender, SASRecConfig
from tests.conftest import make_model

WORLD = "synthetic:seed=2,n_users=300,n_items=120,genre=4,actor=6"


def test_knn_and_probe_separate_what_is_separated_and_not_noise():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    separated = np.eye(4)[y] * 5 + 0.1 * rng.standard_normal((200, 4))
    noise = rng.standard_normal((200, 4))
    assert facets.knn_agreement(separated, y) > 0.95 and facets.probe_accuracy(separated, y) > 0.95
    assert abs(facets.knn_agreement(noise, y) - 0.25) < 0.08 and facets.probe_accuracy(noise, y) < 0.4


def test_facet_labels_reduce_multi_valued_facets():
    items = [(), ("2", "7"), ("2", "8"), ("2", "7", "9"), ("2",), ("2", "9")]
    d = SequenceDataset(name="m", n_items=5, user_ids=["u"], sequences=[np.array([1, 2, 3])],
                        facets={"attribute": items})
    labels, values = facets.facet_labels(d, "attribute")
    assert "2" not in values                      # carried by every item: uninformative
    assert labels[0] == -1 and labels[4] == -1    # padding, and an item with nothing left
    assert values[labels[3]] in ("7", "9") and values[labels[1]] == "7"
    with pytest.raises(DataError, match="no item facet 'genre'"):
        facets.facet_labels(d, "genre")


class HandMade(Recommender):
    """A 'model' whose head 0 sub-embeddings encode genre and head 1 encode actor."""

    def __init__(self, data, swap=False):
        super().__init__(SASRecConfig(n_items=data.n_items, d=16, n_heads=2))
        genre, _ = facets.facet_labels(data, "genre")
        actor, _ = facets.facet_labels(data, "actor")
        rng = np.random.default_rng(0)
        a = np.eye(8)[np.clip(genre, 0, None)] * 3 + 0.3 * rng.standard_normal((len(genre), 8))
        b = np.eye(8)[np.clip(actor, 0, None) % 8] * 3 + 0.3 * rng.standard_normal((len(actor), 8))
        heads = [b, a] if swap else [a, b]
        self.subs = torch.tensor(np.stack(heads), dtype=torch.float32)
        self.embed = torch.nn.Module()
        self.embed.E = torch.nn.Embedding(len(genre), 16)
        self.embed.E.weight.data = torch.tensor(np.concatenate(heads, 1), dtype=torch.float32)

    def item_sub_embeddings(self):
        return self.subs


def test_head_alignment_finds_the_planted_specialisation_and_controls_stay_low():
    data = fame_core.load_dataset(WORLD)
    table = facets.head_alignment(HandMade(data), data)
    acc = table.set_index(["facet", "representation"])["probe_accuracy"]
    assert acc["genre", "head 0"] > 0.95 and acc["actor", "head 1"] > 0.9
    assert acc["genre", "head 1"] < 0.5 and acc["actor", "head 0"] < 0.5
    assert (table["probe_shuffled_labels"] < 0.4).all()
    spec = facets.specialisation(table)
    assert spec["head 0"]["facet"] == "genre" and spec["head 1"]["facet"] == "actor" and spec["head 0"]["gap"] > 0.4
    swapped = facets.specialisation(facets.head_alignment(HandMade(data, swap=True), data))
    assert swapped["head 0"]["facet"] == "actor"


def test_no_specialisation_when_heads_are_alike():
    data = fame_core.load_dataset(WORLD)
    model = HandMade(data)
    model.subs = torch.stack([model.subs[0], model.subs[0] + 0.01])
    spec = facets.specialisation(facets.head_alignment(model, data))
    assert spec["head 0"]["facet"] is None and spec["head 1"]["facet"] is None


def fake_rank(gates=None, router=None):
    def rank(*args, **kwargs):
        n = len(gates if gates is not None else router)
        out = {"ranks": {"gated": np.zeros(n, dtype=np.int64)}, "gates": gates, "router": router,
               "heads": np.random.default_rng(0).standard_normal((n, 2, 8))}
        datasets = [a for a in args if isinstance(a, SequenceDataset)]
        if datasets:
            out["rows"] = datasets[0].splittable_rows()
        return out
    return rank


def test_gate_accuracy_is_1_for_a_facet_gate_and_chance_for_a_random_one(monkeypatch):
    data = fame_core.load_dataset(WORLD)
    facet = np.array(data.truth["dominant_facet"])
    perfect = np.stack([(facet == "genre") * 0.9 + 0.05, (facet == "actor") * 0.9 + 0.05], 1)
    monkeypatch.setattr(facets, "rank_users", fake_rank(gates=perfect))
    g = facets.gate_vs_facet(None, data)
    assert g["accuracy"] == 1.0 and g["head_to_facet"] == {0: "genre", 1: "actor"} and g["auc_head0_gate_for_genre"] == 1.0
    random = np.random.default_rng(1).dirichlet([1, 1], len(facet))
    monkeypatch.setattr(facets, "rank_users", fake_rank(gates=random))
    g = facets.gate_vs_facet(None, data)
    assert abs(g["accuracy"] - g["majority_rate"]) < 0.1 and abs(g["auc_head0_gate_for_genre"] - 0.5) < 0.1


def test_experts_that_follow_the_preferred_value_beat_both_controls(monkeypatch):
    data = fame_core.load_dataset(WORLD)
    active = [a[-1] for a in data.truth["active_value"]]
    values = sorted(set(active))
    N = 4
    router = np.full((len(active), 2, N), 0.1)
    for u, v in enumerate(active):
        router[u, :, values.index(v) % N] = 0.7
    monkeypatch.setattr(facets, "rank_sequences", fake_rank(router=router))
    table = facets.experts_vs_preference(None, data)
    assert (table["mutual_information"] > table["random_split_mi_mean"] + 5 * table["random_split_mi_std"]).all()
    assert (table["mutual_information"] > table["random_router_mi_mean"] + 0.2).all()
    assert table["dead_experts"].max() == 0 and table["mean_top_weight"].iloc[0] == pytest.approx(0.7)


def test_report_on_the_demo_runs_and_is_json_ready():
    import json
    model, data = fame_core.load(fame_core.__path__[0] + "/../checkpoints/demo")
    report = facets.facet_report(model, data, n_users=20)
    json.dumps(report)
    assert {"alignment", "specialisation", "faithfulness", "gate_vs_facet", "experts_vs_preference"} <= set(report)
    removed = {r["removed"] for r in report["faithfulness"]}
    assert removed == {"random", "top-attended"}


# ---- real-data measures (no planted truth): the gate against the heads, the experts against the target

def fake_heads_rank(ranks, gates, router=None):
    """rank_users stand-in returning per-head ranks, gates and (optionally) routers."""
    def rank(model, dataset, split="test", merges=("gated",), *args, **kwargs):
        n = len(gates)
        out = {"ranks": {m: ranks[:, int(m[5:])] if m.startswith("head:") else ranks.min(1) for m in merges},
               "gates": gates, "rows": dataset.splittable_rows()[:n],
               "router": router if router is not None else np.full((n, gates.shape[1], 1), 1.0),
               "heads": np.random.default_rng(0).standard_normal((n, gates.shape[1], 8))}
        return out
    return rank


def test_gate_vs_heads_scores_a_gate_that_picks_the_better_head(monkeypatch):
    data = fame_core.load_dataset(WORLD)
    n = len(data.splittable_rows())
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 100, (n, 2))
    ranks[:10] = 5                                            # ties: no better head, left out
    better = ranks.argmin(1)
    informed = np.stack([(better == 0) * 0.8 + 0.1, (better == 1) * 0.8 + 0.1], 1)
    monkeypatch.setattr(facets, "rank_users", fake_heads_rank(ranks, informed))
    g = facets.gate_vs_heads(make_model(), data)
    assert g["accuracy"] == 1.0 and g["users"] == int((ranks[:, 0] != ranks[:, 1]).sum())
    assert g["mean_top_gate"] == pytest.approx(0.9)
    constant = np.tile([0.6, 0.4], (n, 1))                     # always head 0: the majority reading at best
    monkeypatch.setattr(facets, "rank_users", fake_heads_rank(ranks, constant))
    g = facets.gate_vs_heads(make_model(), data)
    differ = ranks[:, 0] != ranks[:, 1]
    assert g["accuracy"] == pytest.approx(float((better[differ] == 0).mean()))
    assert g["accuracy"] <= g["majority_rate"]


def test_gate_vs_history_facet_follows_concentration(monkeypatch):
    data = fame_core.load_dataset(WORLD)
    labels, _ = facets.facet_labels(data, "genre")
    rows = data.splittable_rows()
    histories = [labels[data.example(r, "test")[0]] for r in rows]
    conc = np.array([np.bincount(y).max() / len(y) for y in histories])
    gates = np.stack([conc, 1 - conc], 1)
    model = make_model(n_items=data.n_items, max_len=200)
    monkeypatch.setattr(facets, "rank_users", fake_heads_rank(np.zeros((len(rows), 2), int), gates))
    h = facets.gate_vs_history_facet(model, data, "genre")
    assert h["spearman"][0] == pytest.approx(1.0) and h["spearman"][1] == pytest.approx(-1.0)
    assert h["z"][0] > 10 and h["users"] == sum(len(y) >= 3 for y in histories)


def test_experts_vs_target_facet_beats_random_routers_only_when_they_follow_the_target(monkeypatch):
    data = fame_core.load_dataset(WORLD)
    labels, _ = facets.facet_labels(data, "genre")
    rows = data.splittable_rows()
    target = np.array([labels[data.example(r, "test")[1]] for r in rows])
    N = 4
    router = np.full((len(rows), 2, N), 0.1)
    router[np.arange(len(rows)), :, target % N] = 0.7
    gates = np.full((len(rows), 2), 0.5)
    monkeypatch.setattr(facets, "rank_users", fake_heads_rank(np.zeros((len(rows), 2), int), gates, router))
    table = facets.experts_vs_target_facet(None, data, "genre")
    assert (table["mutual_information"] > table["random_router_mi_mean"] + 5 * table["random_router_mi_std"]).all()
    shuffled = router[np.random.default_rng(0).permutation(len(rows))]
    monkeypatch.setattr(facets, "rank_users", fake_heads_rank(np.zeros((len(rows), 2), int), gates, shuffled))
    table = facets.experts_vs_target_facet(None, data, "genre")
    assert (table["mutual_information"] < 0.05).all() and table["dead_experts"].max() == 0


def test_gate_vs_heads_within_keeps_only_users_whose_better_head_ranks_the_target_in_its_top_k(monkeypatch):
    data = fame_core.load_dataset(WORLD)
    n = len(data.splittable_rows())
    ranks = np.tile([[500, 900]], (n, 1))                     # deep: head 0 better, the gate picks head 1
    ranks[:40] = [[30, 3]]                                    # shown in a top 20: head 1 better, the gate right
    gates = np.tile([0.3, 0.7], (n, 1))
    monkeypatch.setattr(facets, "rank_users", fake_heads_rank(ranks, gates))
    everyone = facets.gate_vs_heads(make_model(), data)
    assert everyone["users"] == n and everyone["accuracy"] == pytest.approx(40 / n)
    top = facets.gate_vs_heads(make_model(), data, within=20)
    assert top["users"] == 40 and top["accuracy"] == 1.0 and top["majority_rate"] == 1.0 and top["within"] == 20


def test_better_head_predictability_finds_a_better_head_written_in_the_heads_and_none_in_noise(monkeypatch):
    data = fame_core.load_dataset(WORLD)
    n = len(data.splittable_rows())
    rng = np.random.default_rng(3)
    better = rng.integers(0, 2, n)
    ranks = np.stack([np.where(better == 0, 1, 9), np.where(better == 1, 1, 9)], 1)
    gates = np.full((n, 2), 0.5)
    heads = {s: rng.standard_normal((n, 2, 8)) for s in ("valid", "test")}   # each split its own outputs

    def rank(model, dataset, split="test", merges=(), *args, **kwargs):
        return {"ranks": {m: ranks[:, int(m[5:])] for m in merges}, "gates": gates, "heads": heads[split].copy()}

    monkeypatch.setattr(facets, "rank_users", rank)
    noise = facets.better_head_predictability(make_model(), data)
    assert noise["probe_accuracy"] < 0.6 and noise["majority_rate"] == pytest.approx(np.bincount(better).max() / n)
    for s in heads:       # now head 0's first coordinate says which head wins, in both splits
        heads[s][:, 0, 0] = np.where(better == 0, 2.0, -2.0)
    written = facets.better_head_predictability(make_model(), data)
    assert written["probe_accuracy"] > 0.95 and written["users"] == n
    heads["valid"][:, 0, 0] *= -1                 # fitted where the sign means the opposite: scored on test, it fails
    assert facets.better_head_predictability(make_model(), data)["probe_accuracy"] < 0.05
    for s in heads:   # a rule no linear gate can follow: head 0 wins where two coordinates' signs agree (XOR)
        heads[s] = rng.standard_normal((n, 2, 8))
        u = heads[s][:, 0, 0]
        heads[s][:, 1, 0] = np.abs(heads[s][:, 1, 0]) * np.sign(u) * np.where(better == 0, 1.0, -1.0)
    linear = facets.better_head_predictability(make_model(), data)
    boosted = facets.better_head_predictability(make_model(), data, probe="boosted")
    assert linear["probe_accuracy"] < 0.65 and boosted["probe_accuracy"] > 0.9 and boosted["probe"] == "boosted"
    with pytest.raises(ValueError, match="probe must be one of"):
        facets.better_head_predictability(make_model(), data, probe="mlp")
    better[:] = 0
    better[0] = 1                # one user alone in its class: no stratified hold-out possible, still fitted
    ranks[:] = np.stack([np.where(better == 0, 1, 9), np.where(better == 1, 1, 9)], 1)
    lone = facets.better_head_predictability(make_model(), data, probe="boosted")
    assert lone["probe_accuracy"] >= 0.99 * lone["majority_rate"] and lone["majority_rate"] == pytest.approx((n - 1) / n)


def test_controls_need_two_draws_for_their_sample_sd():
    data = fame_core.load_dataset(WORLD)
    for check in (lambda: facets.experts_vs_preference(make_model(), data, n_random=1),
                  lambda: facets.experts_vs_target_facet(make_model(), data, "genre", n_random=1)):
        with pytest.raises(ValueError, match="n_random must be at least 2"):
            check()


def test_real_checks_pass_and_fail_on_their_thresholds(monkeypatch):
    import pandas as pd

    model = make_model()
    experts = pd.DataFrame({"mutual_information": [0.30, 0.20], "random_router_mi_mean": [0.1, 0.1],
                            "random_router_mi_std": [0.02, 0.02]})
    monkeypatch.setattr(facets, "experts_vs_target_facet", lambda *a, **k: experts)
    monkeypatch.setattr(facets, "gate_vs_heads", lambda *a, **k: {"accuracy": 0.66, "majority_rate": 0.60})
    c = facets.real_checks(model, None, "genre")
    assert c["gate_passes"] and c["experts_pass"] and c["expert_mi"] == pytest.approx(0.25)
    assert facets.expert_z(experts) == pytest.approx((0.25 - 0.1) / 0.02)          # the reading beside the verdict
    assert c["gate_top"] == 20 and c["gate_accuracy_top"] == 0.66 and c["majority_rate_top"] == 0.60
    monkeypatch.setattr(facets, "gate_vs_heads", lambda *a, **k: {"accuracy": 0.64, "majority_rate": 0.60})
    experts["mutual_information"] = [0.15, 0.15]               # 0.05 above random routers: 2.5 sd, not enough
    c = facets.real_checks(model, None, "genre")
    assert not c["gate_passes"] and not c["experts_pass"]


def test_gate_merge_value_compares_gated_with_equal_weights_and_the_best_head(monkeypatch):
    data = fame_core.load_dataset(WORLD)
    n = len(data.splittable_rows())
    rng = np.random.default_rng(1)
    heads = rng.integers(0, 60, (n, 2))

    def rank(model, dataset, split="test", merges=("gated",), *a, **k):   # gated = the better head, concat = the worse
        r = {"gated": heads.min(1), "concat": heads.max(1), "head:0": heads[:, 0], "head:1": heads[:, 1]}
        return {"ranks": {m: r[m] for m in merges}}
    monkeypatch.setattr(facets, "rank_users", rank)
    v = facets.gate_merge_value(make_model(), data, k=20)
    nd = lambda r: np.where(r < 20, 1 / np.log2(r + 2.0), 0).mean()
    assert v["NDCG@20"]["gated"] == pytest.approx(nd(heads.min(1)))
    assert v["gated_vs_equal"]["users_worse"] == 0 and v["gated_vs_equal"]["p"] < 1e-6
    assert v["best_head"] in ("head:0", "head:1") and v["gated_vs_best_head"]["difference"] > 0
    r = {"gated": heads[:, 0], "concat": heads[:, 0], "head:0": heads[:, 0], "head:1": heads[:, 1]}
    monkeypatch.setattr(facets, "rank_users", lambda *a, merges=(), **k: {"ranks": {m: r[m] for m in merges}})
    assert facets.gate_merge_value(make_model(), data)["gated_vs_equal"] == \
        {"difference": 0.0, "p": 1.0, "users_better": 0, "users_worse": 0}


@pytest.mark.fast
def test_gate_merge_over_seeds_tests_each_users_mean_over_seeds():
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    n = 300
    a = {m: rng.random(n) for m in ("gated", "concat", "head:0", "head:1")}
    b = {m: rng.random(n) for m in ("gated", "concat", "head:0", "head:1")}
    a["head:0"] += 1.0                                   # seed a's best head is 0, seed b's is 1
    b["head:1"] += 1.0
    r = facets.gate_merge_over_seeds([a, b])
    gated, equal = (a["gated"] + b["gated"]) / 2, (a["concat"] + b["concat"]) / 2
    best = (a["head:0"] + b["head:1"]) / 2
    assert r["seeds"] == 2 and r["users"] == n
    assert r["NDCG@20"]["best_head"] == pytest.approx(best.mean())
    assert r["gated_vs_equal"]["difference"] == pytest.approx((gated - equal).mean())
    assert r["gated_vs_equal"]["p"] == pytest.approx(wilcoxon(gated, equal).pvalue)
    assert r["gated_vs_best_head"]["users_worse"] == int((gated < best).sum())
    # a user better under one seed by what it loses under the other is a tie, not two counts
    grid = rng.integers(1, 8, (2, n)) / 8                  # eighths: the means are exact in floating point
    c = dict(a, concat=grid[0], gated=grid[0] + 1 / 8)
    d = dict(b, concat=grid[1], gated=grid[1] - 1 / 8)
    tie = facets.gate_merge_over_seeds([c, d])["gated_vs_equal"]
    assert tie["users_better"] == tie["users_worse"] == 0 and tie["p"] == 1.0
    with pytest.raises(ValueError, match="two or more seeds"):
        facets.gate_merge_over_seeds([a])
    with pytest.raises(ValueError, match="same users"):
        facets.gate_merge_over_seeds([a, {m: v[:-1] for m, v in b.items()}])


def test_expert_query_similarity_is_one_for_copies():
    model = make_model()
    assert all(abs(c) < 0.2 for c in facets.expert_query_similarity(model))
    with torch.no_grad():
        model.moe.W_Q[:] = model.moe.W_Q[:, :1] * 2.0
    assert facets.expert_query_similarity(model) == pytest.approx([1.0] * model.config.n_heads, abs=1e-5)
    assert facets.expert_query_similarity(make_model("sasrec")) == []


def _valid_row(name, ndcg, gate, majority, z):
    return {"variant": name, "valid": {"NDCG@20": ndcg, "gate picks better head": gate,
                                       "better-head majority": majority, "expert z": z}}


def test_choose_on_validation_prefers_passing_checks_within_tolerance_and_never_reads_test():
    rows = [_valid_row("accurate, flat gate", 0.0720, 0.51, 0.50, 4.0),
            _valid_row("gate and router pass, -0.8 %", 0.0714, 0.60, 0.50, 3.5),
            _valid_row("gate passes, router fails", 0.0715, 0.70, 0.50, 1.0),
            _valid_row("best gate but -2 %", 0.0706, 0.90, 0.50, 5.0),
            {"variant": "old row", "NDCG@20": 0.09},           # a test reading only: never chosen
            {**_valid_row("facet probe", 0.0730, 0.95, 0.50, 9.0), "options": {"facet_heads": "attribute"}}]
    out = facets.choose_on_validation(rows, reference=0.0720)
    assert out["chosen"] == "gate and router pass, -0.8 %"
    assert out["unread"] == ["old row"] and out["metadata"] == ["facet probe"]   # item metadata: never chosen
    verdict = {t["variant"]: t for t in out["table"]}
    assert not verdict["best gate but -2 %"]["within tolerance"]
    assert verdict["gate passes, router fails"]["gate passes"] and not verdict["gate passes, router fails"]["experts pass"]
    # a looser tolerance lets the best gate in; with no setting within it, accuracy decides
    assert facets.choose_on_validation(rows, reference=0.0720, tolerance=0.03)["chosen"] == "best gate but -2 %"
    far = facets.choose_on_validation(rows, reference=0.0800)
    assert far["chosen"] == "accurate, flat gate" and far["rule"].startswith("none within")
    # among equals on the checks, the larger gate margin wins
    tie = [_valid_row("a", 0.0720, 0.52, 0.50, 0.0), _valid_row("b", 0.0719, 0.53, 0.50, 0.0)]
    assert facets.choose_on_validation(tie, reference=0.0720)["chosen"] == "b"
    with pytest.raises(ValueError, match="reference"):
        facets.choose_on_validation(rows, reference=0.0)
