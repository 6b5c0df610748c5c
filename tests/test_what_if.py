"""The app's "What if" surfaces (issue 44): the case study's panel and the Interventions page show
fame_core.interventions' and fame_core.counterfactual's numbers, offer what a model can take
(by capability), export the before/after figure at its stated width, and treat bad links as one
warning."""

import json
import re

import numpy as np
import pytest

import fame_core
from fame_core import intervention_export as ie
from fame_core import what_if as wi
from fame_core.counterfactual import counterfactual
from fame_core.interventions import intervene, intervene_population
from tests.conftest import REPO, deep_link, run_app


@pytest.fixture(scope="module")
def demo():
    return fame_core.load(REPO / "checkpoints" / "demo")


def panel_tables(at):
    """(target ranks, gates, lists) of the panel: its three tables, in page order."""
    tables = [df.value for df in at.dataframe]
    ranks = next(t for t in tables if "rank before" in t.columns)
    gates = next(t for t in tables if "gate before" in t.columns)
    lists = next(t for t in tables if list(t.columns) == ["before", "after"])
    return ranks, gates, lists


def ids(cells) -> list[int]:
    return [int(re.search(r"item (\d+)", c).group(1)) for c in cells]


def test_the_panel_shows_interventions_numbers_and_gate_uniform_gives_the_concat_ranks(demo):
    model, data = demo
    at = run_app(user="3")
    assert len(at.table) == 2 and not [t for t in at.dataframe if "rank before" in t.value.columns]   # nothing yet
    at.selectbox(key="wi_spec").set_value("gate=uniform").run()
    assert not at.exception
    seq, target = fame_core.user_example(data, "3")
    res = intervene(model, [seq], [target], ["gate=uniform"], k=20)
    ranks, gates, lists = panel_tables(at)
    for m, b, a in zip(ranks["merge"], ranks["rank before"], ranks["rank after"]):
        assert b == res.before.ranks[m][0] and a == res.after.ranks[m][0]
    assert ranks.set_index("merge").loc["gated", "rank after"] == res.before.ranks["concat"][0]   # known answer
    np.testing.assert_allclose(gates["gate after"], [0.5, 0.5])
    np.testing.assert_allclose(gates["gate before"], res.before.gates[0].round(4))
    assert ids(lists["before"]) == res.before.top["gated"][0].tolist()
    assert ids(lists["after"]) == res.after.top["gated"][0].tolist()
    entered = set(res.after.top["gated"][0]) - set(res.before.top["gated"][0])
    assert {i for i, c in zip(ids(lists["after"]), lists["after"]) if c.startswith("＋")} == entered


def test_the_panel_shows_counterfactuals_result_and_opens_the_edited_history(demo):
    model, data = demo
    at = run_app(user="3")
    at.segmented_control(key="wi_kind").set_value("Counterfactual").run()
    at.selectbox(key="wi_goal").set_value("top-k").run()
    seq, target = fame_core.user_example(data, "3")
    cf = counterfactual(model, seq, target, goal="top-k", k=20, budget=3)
    assert cf.found and cf.edits
    assert any(m.value.startswith(f"**{cf.message}**") for m in at.markdown)
    edits = next(t.value for t in at.dataframe if "edit" in t.value.columns)
    assert edits["edit"].tolist() == [e["op"] for e in cf.edits]
    assert edits["position"].tolist() == [e["position"] for e in cf.edits]
    ranks, _, _ = panel_tables(at)
    assert ranks["rank after"].tolist() == [cf.after["target_rank"][m] for m in ranks["merge"]]
    assert any(f"--items {','.join(map(str, cf.edited))} --target {target}" in c.value for c in at.code)
    at.button(key="wi_open").click().run()                  # the case study's own editing box takes it
    assert not at.exception and at.subheader[0].value == "History of user 3 (edited)"
    assert at.text_area(key="edit_text").value == ", ".join(map(str, cf.edited))


def test_a_goal_no_edit_within_the_budget_reaches_is_one_plain_line(demo):
    model, data = demo
    at = run_app(user="3", k="1")
    at.segmented_control(key="wi_kind").set_value("Counterfactual").run()
    at.slider(key="wi_budget").set_value(1).run()
    at.selectbox(key="wi_goal").set_value("top-k").run()
    seq, target = fame_core.user_example(data, "3")
    cf = counterfactual(model, seq, target, goal="top-k", k=1, budget=1)
    assert not cf.found
    assert [i.value for i in at.info if i.value.startswith("No edit within the budget of 1 works")] == \
        [f"No edit within the budget of 1 works: {cf.message}."]


def test_sasrec_is_offered_heads_only_and_no_gate_goal():
    at = run_app(checkpoint="demo-sasrec", user="3")
    assert at.selectbox(key="wi_spec").options == ["head:0", "head:1"]
    at.segmented_control(key="wi_kind").set_value("Counterfactual").run()
    assert at.selectbox(key="wi_goal").options == ["top-k", "top-1"]
    model, _ = fame_core.load(REPO / "checkpoints" / "demo-sasrec")
    assert wi.flat_choices(model) == ["head:0", "head:1"] and "gate" not in wi.intervention_choices(model)


def test_the_before_after_figure_is_the_stated_width_and_its_sidecar_holds_the_numbers(demo):
    model, data = demo
    seq, target = fame_core.user_example(data, "3")
    res = intervene(model, [seq], [target], ["expert:1.3"], k=20)
    one = res.user(0)
    before, after = wi.reading(one["before"]), wi.reading(one["after"])
    for width, inches in (("single", 3.3), ("double", 7.0)):
        fig, table = ie.before_after_figure(before, after, res.merges, model.config.n_items, 20, "expert:1.3",
                                            width=width)
        pdf = ie.figure_file(fig, table, "pdf", {"checkpoint": "demo"})
        box = [float(v) for v in re.search(rb"/MediaBox\s*\[([^\]]*)\]", pdf).group(1).split()]
        assert box[2] - box[0] == pytest.approx(inches * 72, abs=0.01)
    side = json.loads(ie.figure_file(fig, table, "json", {"checkpoint": "demo"}))
    assert side["checkpoint"] == "demo" and side["width_in"] == 7.0 and side["uniform_gate"] == 0.5
    assert side["rank_axis"] == {"scale": "log", "range": [1, model.config.n_items], "better": "right", "top_k": 20}
    assert side["after"]["rank"] == {m: int(res.after.ranks[m][0]) for m in res.merges}
    np.testing.assert_allclose(side["before"]["gates"], res.before.gates[0])
    csv = ie.figure_file(fig, table, "csv", {}).decode()
    assert f"target rank (gated),{res.before.ranks['gated'][0]},{res.after.ranks['gated'][0]}" in csv
    assert b"<svg" in ie.figure_file(fig, table, "svg", {}) and ie.figure_file(fig, table, "png", {})[:4] == b"\x89PNG"
    ax = fig.axes[1]
    assert ax.get_ylim() == (0, 1) and any(np.allclose(line.get_ydata(), 0.5) for line in ax.lines)   # 1/H marked


def test_the_panels_download_row_exports_the_figure(demo):
    at = run_app(user="3")
    at.selectbox(key="wi_spec").set_value("head:1").run()
    labels = [b.proto.label for b in at.get("download_button") if "intervention_dl" in b.proto.id]
    assert labels == ["PDF", "SVG", "PNG", "CSV", "JSON"]


def test_list_marks_say_what_entered_and_left():
    assert wi.list_changes([1, 2, 3], [2, 4, 1]) == (["", "", "−"], ["", "＋", ""])


# ---- the Interventions page -------------------------------------------------------------------------------

def interventions_page(**params):
    return deep_link("views/interventions.py", **params)


def test_the_population_page_shows_intervene_populations_numbers_and_links_users(demo):
    model, data = demo
    at = interventions_page(checkpoint="demo", ablate="expert:1.3", split="test", k="10")
    assert "Interventions" in [t.value for t in at.title] and not at.warning
    assert at.selectbox(key="ablate").value == "expert:1.3" and at.segmented_control(key="split").value == "test"
    pop = intervene_population(model, data, "test", ["expert:1.3"], k=10)
    s = pop["summary"]
    shown = {m.label: (m.value, m.proto.delta) for m in at.metric}
    assert shown["NDCG@10 after"][0] == f"{s['after']['NDCG@10']:.4f}"
    assert shown["NDCG@10 after"][1].startswith(f"{s['mean_change_NDCG@10']:+.4f} (before {s['before']['NDCG@10']:.4f})")
    assert shown["HR@10 after"][0] == f"{s['after']['HR@10']:.4f}"
    lo, hi = s["ci95_mean_change"]
    assert shown["95 % interval of the NDCG@10 change"][0] == f"{lo:+.4f} .. {hi:+.4f}"
    assert shown["Wilcoxon p"][0] == f"{s['p_value']:.3g}"
    assert any("Wilcoxon signed-rank test" in c.value and "paired bootstrap" in c.value for c in at.caption)
    assert any(f"better **{s['users_better']:,}**" in m.value for m in at.markdown)
    hist = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert hist["layout"]["yaxis"]["range"] == [0, 1]
    most = at.dataframe[0].value
    want = wi.most_changed(pop["table"], 10, 20)
    assert most["user"].tolist() == want["user"].tolist()
    assert most["case study"].iloc[0] == f"/?checkpoint=demo&user={want['user'].iloc[0]}"


def test_the_population_run_is_cached_on_disk_with_the_same_numbers(demo, tmp_path, monkeypatch):
    model, data = demo
    monkeypatch.setenv("FAME_CACHE", str(tmp_path))
    path = REPO / "checkpoints" / "demo"
    first, table = wi.population(model, data, path, "test", ["head:1"], k=20)
    again, table2 = wi.population(model, data, path, "test", ["head:1"], k=20)
    assert not first["from_cache"] and again["from_cache"]
    direct = intervene_population(model, data, "test", ["head:1"], k=20)
    assert again["p_value"] == direct["summary"]["p_value"] and again["ci95_mean_change"] == direct["summary"]["ci95_mean_change"]
    np.testing.assert_array_equal(table2["ndcg@20_after"], direct["table"]["ndcg@20_after"])
    assert table2["user"].tolist() == direct["table"]["user"].tolist()
    other, _ = wi.population(model, data, path, "test", ["head:0"], k=20)     # another key: computed
    assert not other["from_cache"] and wi.population_key("test", ["head:0"], 20) != wi.population_key("test", ["head:1"], 20)


def test_the_population_page_for_sasrec_offers_heads_only():
    at = interventions_page(checkpoint="demo-sasrec", ablate="head:1", k="5")
    assert at.selectbox(key="ablate").options == ["head:0", "head:1"] and at.selectbox(key="ablate").value == "head:1"


@pytest.mark.parametrize("params,message", [
    ({"ablate": "expert:9.9"}, "`ablate=expert:9.9` is not available"),
    ({"ablate": "gate=uniform", "checkpoint": "demo-sasrec"}, "`ablate=gate=uniform` is not available"),
    ({"split": "train"}, "`split=train` is not available"),
    ({"k": "inf"}, "`k=inf` is not a whole number"),
    ({"k": "1e309"}, "`k=1e309` is not a whole number"),
])
def test_bad_links_to_the_population_page_are_one_warning_never_an_exception(params, message):
    at = interventions_page(**{"checkpoint": "demo", **params})      # deep_link asserts: no exception
    warnings = [w.value for w in at.warning]
    assert sum(message in w for w in warnings) == 1, warnings
    assert at.metric, "the page still shows the default view"


def test_the_panel_links_its_intervention_to_the_population_page():
    at = run_app(user="3")
    at.selectbox(key="wi_spec").set_value("expert:1.3").run()
    link = next(p for p in at.get("page_link") if "over every user" in p.proto.label)
    assert "ablate=expert%3A1.3" in link.proto.query_string or "ablate=expert:1.3" in link.proto.query_string
