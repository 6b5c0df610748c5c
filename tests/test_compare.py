"""Two checkpoints user by user (fame_core.compare)."""

import json

import numpy as np
import pytest
from scipy.stats import wilcoxon

import fame_core
from fame_core.compare import compare, compare_ranks, most_disagreeing, ndcg_at
from fame_core.errors import FameError
from tests.conftest import REPO


@pytest.fixture(scope="module")
def demo():
    return fame_core.load(REPO / "checkpoints" / "demo")


def test_a_checkpoint_against_itself_is_all_ties_with_p_one(demo):
    model, data = demo
    table, summary = compare(model, model, data)
    assert summary["ties"] == summary["users"] == len(table) == 2000
    assert summary["a_better"] == summary["b_better"] == 0 and summary["p_value"] == 1.0
    assert (table["better"] == "tie").all() and (table["disagreement"] == 0).all()
    assert "Wilcoxon signed-rank" in summary["test"] and "NDCG@20" in summary["test"]


def test_fame_against_sasrec_reproduces_both_recorded_metrics(demo):
    model, data = demo
    sasrec = fame_core.load_checkpoint(REPO / "checkpoints" / "demo-sasrec")
    table, summary = compare(model, sasrec, data, names=("demo", "demo-sasrec"))
    assert round(summary["NDCG@20_a"], 4) == round(model.provenance.training["test"]["NDCG@20"], 4)
    assert round(summary["NDCG@20_b"], 4) == round(sasrec.provenance.training["test"]["NDCG@20"], 4)
    assert summary["a_better"] + summary["b_better"] + summary["ties"] == 2000
    top = most_disagreeing(table, 5)
    assert top["disagreement"].is_monotonic_decreasing and top["disagreement"].iloc[0] == table["disagreement"].max()
    a, b = table["rank_a"].to_numpy() - 1, table["rank_b"].to_numpy() - 1
    assert summary["p_value"] == pytest.approx(wilcoxon(ndcg_at(a, 20), ndcg_at(b, 20)).pvalue)


def test_hand_made_ranks():
    out = compare_ranks(np.array([0, 5, 100, 2]), np.array([1, 5, 0, 30]), k=20)
    assert (out["a_better"], out["b_better"], out["ties"]) == (2, 1, 1)
    assert out["NDCG@20_a"] == pytest.approx((1 + 1 / np.log2(7) + 0 + 1 / np.log2(4)) / 4)
    assert out["users_with_a_difference"] == 3


def test_two_data_sets_are_refused_in_one_line(demo):
    model, _ = demo
    other = fame_core.load_checkpoint(REPO / "checkpoints" / "beauty-fame")
    with pytest.raises(FameError, match="different data sets") as err:
        compare(model, other, demo[1])
    assert "\n" not in str(err.value)


# ---- the Compare page, driven headlessly ------------------------------------------------------------------

def compare_page(**params):
    """The app opened straight on /compare with the given URL parameters (as a deep link does)."""
    from tests.conftest import deep_link

    return deep_link("views/compare.py", **params)


def test_compare_page_of_a_checkpoint_with_itself():
    at = compare_page(a="demo", b="demo")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["same NDCG@20"] == "2,000" and metrics["demo better on NDCG@20"] == "0"
    assert any("p = 1 " in m.value and "Wilcoxon" in m.value for m in at.markdown)


def test_compare_page_one_user_under_both_models(demo):
    model, data = demo
    sasrec = fame_core.load_checkpoint(REPO / "checkpoints" / "demo-sasrec")
    at = compare_page(a="demo", b="demo-sasrec", user="42")
    seq, target = fame_core.user_example(data, "42")
    for m, name in ((model, "demo"), (sasrec, "demo-sasrec")):
        rank = fame_core.inspect(m, seq, target).target_rank["gated"]
        assert any(x.value.startswith(f"**{name}**") and f"target rank {rank} " in x.value for x in at.markdown)
    assert any("/?checkpoint=demo-sasrec&user=42" in x.value for x in at.markdown)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert sum("per history position" in t for t in titles) == 2 and sum("Deletion curves" in t for t in titles) == 2


def test_compare_page_refuses_two_data_sets():
    at = compare_page(a="demo", b="beauty-fame")
    assert at.error and "different data sets" in at.error[0].value and "\n" not in at.error[0].value


def test_headline_counts_are_on_the_tested_metric_beside_any_depth():
    # user 4: a ranks the target at 300, b at 400: better at any depth, the same NDCG@20 (0)
    out = compare_ranks(np.array([0, 5, 100, 2, 300]), np.array([1, 5, 0, 30, 400]), k=20)
    assert (out["a_better_ndcg@20"], out["b_better_ndcg@20"], out["same_ndcg@20"]) == (2, 1, 2)
    assert (out["a_better"], out["b_better"], out["ties"]) == (3, 1, 1)
    assert out["a_better_ndcg@20"] + out["b_better_ndcg@20"] == out["users_with_a_difference"]
    assert "NDCG@20" in out["counts_definition"] and "any depth" in out["counts_definition"]
