"""The Facet explorer page driven headlessly: maps, neighbours and the alignment verdict come from
fame_core.facets for the same checkpoint."""

import numpy as np
import pytest

import fame_core
from fame_core.facets import head_alignment, item_representations, nearest_items, project, specialisation
from tests.conftest import REPO, run_app
from tests.test_app import decode, plotly_spec

@pytest.fixture(scope="module")
def demo():
    return fame_core.load(REPO / "checkpoints" / "demo")


def open_page(**params):
    return run_app("views/facet_explorer.py", **params)


def test_page_shows_verdict_maps_neighbours_and_table(demo):
    model, data = demo
    at = open_page(projection="pca", item="42")
    assert at.title[0].value == "Facet explorer"
    spec = specialisation(head_alignment(model, data))
    verdict = next(m.value for m in at.markdown if m.value.startswith("**Specialisation checks**"))
    for h in range(2):
        expected = "no facet" if spec[f"head {h}"]["facet"] is None else f"≈ {spec[f'head {h}']['facet']}"
        assert f"head {h}" in verdict and expected in verdict
    assert at.subheader[0].value == f"Nearest neighbours of {data.label(42)}"
    near = nearest_items(model, 42)
    assert [t.value["item"].tolist() for t in at.table] == [near["head 0"], near["head 1"], near["full embedding"]]
    # the head-1 map is a PCA of head 1's sub-embeddings, item i at row i
    xy = project(item_representations(model)["head 1"][1:], "pca")
    spec1 = plotly_spec(at, 1)["data"]
    xs = np.concatenate([decode(t["x"]) for t in spec1[:-1]])
    ids = np.concatenate([decode(t["customdata"]) for t in spec1[:-1]]).astype(int)
    np.testing.assert_allclose(xs, xy[ids - 1, 0], rtol=1e-4, atol=1e-4)
    assert sorted(ids.tolist()) == list(range(1, data.n_items + 1))
    table = at.dataframe[0].value
    assert set(table["representation"]) == {"head 0", "head 1", "full embedding", "random projection"}


def test_recolouring_by_another_facet(demo):
    at = open_page(projection="pca")
    before = [t["name"] for t in plotly_spec(at, 0)["data"]]
    at.segmented_control(key="facet").set_value("actor").run()
    after = [t["name"] for t in plotly_spec(at, 0)["data"]]
    assert "Action" in before and all(n.startswith("Actor") for n in after[1:-1]) and before != after


def test_bad_parameters_are_friendly():
    at = open_page(facet="colour", projection="tsne")
    warnings = " ".join(w.value for w in at.warning)
    assert "`facet=colour` is not available" in warnings and "`projection=tsne` is not available" in warnings


def test_umap_maps_draw(demo):
    at = open_page(projection="umap")
    assert len(at.get("plotly_chart")) == 3


def test_demo_facets_badges_describe_the_heads_and_give_the_verdicts():
    at = open_page(checkpoint="demo-facets", projection="pca")
    verdict = next(m.value for m in at.markdown if m.value.startswith("**Specialisation checks**"))
    # the heads' specialisation is a description (gray); the verdicts (issue 41) are green only when passed:
    # the supervised heads separate their facets, but no better than a random projection of the embedding,
    # and the gate names the better head less often than a logistic regression on the history
    assert ":gray-badge[head 0 ≈ genre" in verdict and ":gray-badge[head 1 ≈ actor" in verdict
    assert ":orange-badge[gate picks the better head failed: 0.790 vs logistic regression" in verdict
    assert ":green-badge[" not in verdict


def test_case_study_shows_the_same_checks():
    at = run_app(checkpoint="demo-facets")
    at.toggle(key="checks").set_value(True).run()                  # on by itself once the verdicts are on disk
    verdict = next(m.value for m in at.markdown if m.value.startswith("**Specialisation checks**"))
    assert ":gray-badge[head 0 ≈ genre" in verdict and ":orange-badge[gate picks the better head failed" in verdict
    at.toggle(key="checks").set_value(False).run()
    assert not any(m.value.startswith("**Specialisation checks**") for m in at.markdown)
    again = run_app(checkpoint="demo-facets")                      # a fresh session: on, read from disk
    assert any(m.value.startswith("**Specialisation checks**") for m in again.markdown)


def test_the_badges_show_what_the_verdicts_say(monkeypatch, tmp_path, demo):
    import streamlit as st

    from fame_core import verdicts

    monkeypatch.setenv("FAME_CACHE", str(tmp_path))
    passed = {"passed": True, "model": 0.9, "baselines": [{"name": "last item's label", "value": 0.8}],
              "best_baseline": "last item's label", "margin": 0.1, "ci95": [0.05, 0.15], "p": 1e-6,
              "test": verdicts.MCNEMAR, "users": 500, "split": "test"}
    monkeypatch.setattr(verdicts, "verdicts", lambda *a, **k: {
        "gate": dict(passed, passed=False, margin=0.01, ci95=[-0.01, 0.03]), "router": passed,
        "heads": {"passed": False, "reason": "no item facet has two values"}, "attention": passed})
    st.cache_data.clear()
    try:
        at = open_page(projection="pca")
    finally:
        st.cache_data.clear()
    verdict = next(m.value for m in at.markdown if m.value.startswith("**Specialisation checks**"))
    assert ":orange-badge[gate picks the better head failed: 0.900 vs last item's label 0.890" in verdict
    assert ":green-badge[experts → next item passed: 0.900 vs last item's label 0.800 · margin +0.100 " \
           "(95 % CI +0.050 to +0.150)]" in verdict
    assert ":gray-badge[heads ≈ facets: not checked · no item facet has two values]" in verdict


@pytest.mark.parametrize("value", ["inf", "-inf", "1e309", "abc", "-5", "0", "601"])
def test_a_bad_item_is_a_visible_warning_and_the_box_shows_the_item_used(demo, value):
    at = open_page(projection="pca", item=value)
    used = {"-5": 1, "0": 1, "601": 600}.get(value, 1)
    assert len(at.warning) == 1 and f"`item={value}`" in at.warning[0].value and f"using item={used}" in at.warning[0].value
    assert at.number_input(key="item").value == used and at.query_params["item"] == str(used)
    assert at.subheader[0].value == f"Nearest neighbours of {demo[1].label(used)}"


def cie76(a: str, b: str) -> float:
    """CIE76 colour difference of two hex colours (sRGB, D65)."""
    def lab(h):
        rgb = np.array([int(h[i:i + 2], 16) / 255 for i in (1, 3, 5)])
        rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
        xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
        xyz /= np.array([0.95047, 1.0, 1.08883])
        f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
        return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])
    return float(np.linalg.norm(lab(a) - lab(b)))


def test_map_colours_are_distinct_named_and_the_same_value_rule_is_stated(demo):
    """Issue 42: five of seven colours were near-identical; the multi-valued rule was applied silently."""
    from itertools import combinations

    from fame_core.labels import facet_labels, facet_rule

    _, data = demo
    at = open_page(projection="pca")
    assert any(c.value == f"Colours and 'same genre': {facet_rule()}" for c in at.caption)
    assert "at most half of all items" in facet_rule() and "\n" not in facet_rule()
    _, values = facet_labels(data, "genre")
    for i in range(3):
        spec = plotly_spec(at, i)
        traces = spec["data"][:-1]                              # the last trace is the chosen item
        assert [t["name"] for t in traces] == ["(none)"] + values   # named by value, in the legend's order
        colours = [t["marker"]["color"] for t in traces]
        assert len(set(colours)) == len(colours)
        assert min(cie76(a, b) for a, b in combinations(colours, 2)) > 20, colours
    legend = plotly_spec(at, 2)["layout"]
    assert legend["showlegend"] and legend["legend"]["title"]["text"] == "genre"
