"""The Streamlit app driven headlessly (streamlit.testing.v1.AppTest): every number it shows
must be fame_core.inspect's for the same user."""

import base64
import json
import re

import numpy as np
import pytest

import fame_core
from tests.conftest import REPO, deep_link, run_app

@pytest.fixture(scope="module")
def demo():
    return fame_core.load(REPO / "checkpoints" / "demo")


def page_svgs(at) -> list[tuple[str, str]]:
    """(alt text, SVG source) of every static figure on the page, in page order."""
    import base64

    out = []
    for image in at.get("image"):
        for img in image.proto.imgs:
            head, _, body = img.url.partition(",")
            assert head == "data:image/svg+xml;base64", head
            out.append((img.alt, base64.b64decode(body).decode()))
    return out


def plotly_spec(at, index):
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def decode(array):
    if isinstance(array, dict):  # plotly's typed-array encoding
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array)


def cell_id(cell: str) -> int:
    """The item id of one cell of the lists table ('▶ item 63 · Horror', '● 4144 · Brand: …')."""
    return int(re.search(r"\d+", cell).group())


def shown_lists(at, H=2):
    """The per-head lists and the merged list (the columns of one rank-aligned table), as item ids."""
    table = at.table[0].value
    assert table.shape[1] == H + 1 and list(table.index) == list(range(1, len(table) + 1))
    return [[cell_id(c) for c in table[col]] for col in table.columns]


def default_user(data):
    """The first user whose test target is not in their own history (the app's default)."""
    for u in data.user_ids:
        if len(data.sequences[data.user_row(u)]) < 3:
            continue
        seq, target = fame_core.user_example(data, u)
        if target not in set(seq):
            return u


def test_default_view_is_the_first_user_with_a_rankable_target_with_the_models_own_numbers(demo):
    at = run_app(interactive="true")                  # the plotly charts carry their numbers
    model, data = demo
    user = default_user(data)
    assert user != "1"                      # user 1's target is in the history: rank meaningless
    assert at.title[0].value == "Case study" and at.subheader[0].value == f"History of user {user}"
    seq, target = fame_core.user_example(data, user)
    insp = fame_core.inspect(model, seq, target, top_k=20)
    lists = shown_lists(at)
    assert lists[0] == insp.top["head:0"].tolist() and lists[1] == insp.top["head:1"].tolist()
    assert lists[2] == insp.top["gated"].tolist()
    gates = decode(plotly_spec(at, 0)["data"][0]["y"])
    np.testing.assert_allclose(gates, insp.gates, rtol=1e-5)
    for h, chart in ((0, 1), (1, 3)):                                 # gates, then attention/router per head
        z = decode(plotly_spec(at, chart)["data"][0]["z"]).reshape(4, -1)   # experts x positions
        np.testing.assert_allclose(z, insp.attention[h, :, -1, :], rtol=1e-5)
    router = decode(plotly_spec(at, 4)["data"][0]["z"]).reshape(-1, 4)     # positions x experts
    np.testing.assert_allclose(router, insp.router[1], rtol=1e-5)
    assert [b.proto.label for b in at.get("download_button")] == ["PDF", "SVG", "PNG", "CSV", "JSON", "All figures (zip)"]
    assert not at.info                                          # the target has a rank: no explanation needed
    assert all("rank_gated" not in d.value.columns for d in at.dataframe)   # the user table waits until asked


def test_by_default_gates_attention_and_router_are_static_svg_of_what_the_exports_show(demo):
    """Static by default (drawn by a browser at once): fame_core.svg's drawing of the exports' own
    Heatmap descriptions, text as text, the colour scale of the chosen policy with its uniform
    level; no plotly chart."""
    from fame_core import export, scales, svg

    model, data = demo
    user = default_user(data)
    insp = fame_core.inspect(model, *fame_core.user_example(data, user), top_k=20)
    for policy in ("unit", "own"):
        at = run_app(scale=policy)
        assert not at.get("plotly_chart") and not at.exception
        svgs = page_svgs(at)
        assert [alt for alt, _ in svgs] == ["Gate weight of each head"] + [
            f"Head {h}: {what}" for h in range(2) for what in ("expert attention from the last position", "router weights")]
        expected = [svg.gates(insp)] + [svg.heatmap(f(insp, h, scale=policy)) for h in range(2)
                                        for f in (export.expert_attention_heatmap, export.router_heatmap)]
        for (alt, shown), drawn in zip(svgs, expected):
            assert shown == drawn, alt
            assert "<text" in shown and "Head" in shown or alt.startswith("Gate")     # text stays text
        router = scales.router_scale(insp, 0, policy)
        assert f"{router.uniform:.3g} = 1/4 uniform" in svgs[2][1]
        assert ("1/2" in svgs[0][1]) and "uniform" in svgs[0][1]               # the gate's uniform level


def test_user_table_filters_gated_wins(demo):
    at = run_app()
    at.toggle(key="show_user_table").set_value(True).run()
    table = at.dataframe[0].value
    assert len(table) == 1000 and {"rank_gated", "rank_concat", "gate_entropy", "planted_facet"} <= set(table.columns)
    assert "2,000 of 2,000 users match; the first 1,000 are listed" in " ".join(c.value for c in at.caption)
    at.selectbox(key="user_sort").set_value("rank_gated").run()     # sorted over all 2,000, then listed
    assert at.dataframe[0].value["rank_gated"].tolist()[:5] == sorted(
        fame_core.users.from_cohort(fame_core.cohort.cohort_table(*demo, "test"), demo[1])["rank_gated"])[:5]
    at.selectbox(key="user_sort").set_value("(data order)").run()
    at.checkbox[0].check().run()
    wins = at.dataframe[0].value
    assert 0 < len(wins) < 2000 and (wins["rank_gated"] <= 20).all() and (wins["rank_concat"] > 20).all()
    model, data = demo
    user = wins["user"].iloc[0]
    insp = fame_core.inspect(model, *fame_core.user_example(data, user), top_k=20)
    assert insp.target_rank["gated"] == wins["rank_gated"].iloc[0] and insp.target_rank["concat"] > 20


def test_switching_user_changes_history_and_lists(demo):
    at = run_app()
    before = shown_lists(at)
    at.text_input(key="user").set_value("42").run()
    assert not at.exception and at.subheader[0].value == "History of user 42"
    model, data = demo
    insp = fame_core.inspect(model, *fame_core.user_example(data, "42"), top_k=20)
    assert shown_lists(at)[0] == insp.top["head:0"].tolist() != before[0]


def test_merge_toggle_changes_the_merged_list(demo):
    at = run_app(user="3")
    gated = shown_lists(at)[2]
    at.segmented_control(key="merge").set_value("concat").run()
    concat = shown_lists(at)[2]
    model, data = demo
    insp = fame_core.inspect(model, *fame_core.user_example(data, "3"), top_k=20)
    assert gated == insp.top["gated"].tolist() and concat == insp.top["concat"].tolist() and gated != concat
    assert any(m.value.startswith(f"**concat** · target rank {insp.target_rank['concat']}") for m in at.markdown)


def test_counterfactual_edit_marks_the_sequence_and_recomputes(demo):
    at = run_app(user="3")
    at.text_area(key="edit_text").set_value("5, 17, 42").run()
    assert not at.exception
    assert "(edited)" in at.subheader[0].value
    assert any("edited sequence" in m.value for m in at.markdown)
    model, data = demo
    target = fame_core.user_example(data, "3")[1]
    insp = fame_core.inspect(model, [5, 17, 42], target, top_k=20)
    assert shown_lists(at)[0] == insp.top["head:0"].tolist()


def test_a_bad_edit_is_a_message_not_a_crash():
    at = run_app(user="3")
    at.text_area(key="edit_text").set_value("5, banana").run()
    assert not at.exception and "item ids separated by commas" in at.error[0].value
    at.text_area(key="edit_text").set_value("5, 99999").run()
    assert "Item 99999 is not an item" in at.error[0].value


def test_deep_link_restores_the_view():
    at = run_app(checkpoint="demo-sasrec", user="11", merge="concat", head="1", k="5")
    assert at.subheader[0].value == "History of user 11"
    assert at.selectbox(key="checkpoint").value == "demo-sasrec"
    assert at.segmented_control(key="merge").value == "concat" and at.segmented_control(key="head").value == "1"
    assert all(len(items) == 5 for items in shown_lists(at))


@pytest.mark.parametrize("params,message", [
    ({"user": "no-such-user"}, "`user=no-such-user` is not a user of data set"),
    ({"merge": "head:7"}, "`merge=head:7` is not available"),
    ({"checkpoint": "../../etc/passwd"}, "`checkpoint=../../etc/passwd` is not available"),
    ({"head": "x"}, "`head=x` is not a whole number from 0 to 1; using head=0"),
])
def test_bad_query_parameters_give_a_friendly_message(params, message):
    at = run_app(**params)
    assert any(message in w.value for w in at.warning), [w.value for w in at.warning]
    assert at.subheader[0].value == f"History of user {default_user(fame_core.load(REPO / 'checkpoints' / 'demo')[1])}"


def test_a_checkpoint_whose_data_is_missing_opens_model_only(tmp_path, monkeypatch, demo):
    import shutil
    root = tmp_path / "roots"
    shutil.copytree(REPO / "checkpoints" / "demo", root / "moved")
    record = json.loads((root / "moved" / "dataset.json").read_text())
    record.update(reader="sequence-file", spec=str(tmp_path / "gone.txt"))
    (root / "moved" / "dataset.json").write_text(json.dumps(record))
    monkeypatch.setenv("FAME_CHECKPOINTS", str(root))
    at = run_app(checkpoint="roots/moved")
    assert any("is not at its recorded path" in w.value for w in at.warning)
    assert at.text_input(key="data_path:roots/moved") is not None
    assert at.subheader[0].value == "History of hand-made sequence"


def test_the_documented_sports_user_230_link_opens_its_case_study():
    from tests.conftest import needs_shared

    needs_shared("amazon/Sports_and_Outdoors.txt")
    at = run_app(checkpoint="sports-fame", user="230", k="20")      # docs/results.md's deep link
    assert at.subheader[0].value == "History of user 230"
    model, data = fame_core.load(REPO / "checkpoints" / "sports-fame")
    seq, target = fame_core.user_example(data, "230")
    insp = fame_core.inspect(model, seq, target, top_k=20)
    assert shown_lists(at) == [insp.top["head:0"].tolist(), insp.top["head:1"].tolist(), insp.top["gated"].tolist()]
    assert not any(m.value.startswith("**Specialisation checks**") for m in at.markdown)   # 18k items: off by default


def test_the_gated_sports_user_230_page_says_what_its_heads_and_gate_mean():
    from tests.conftest import needs_shared

    needs_shared("amazon/Sports_and_Outdoors.txt")
    at = run_app(checkpoint="sports-fame-gated", user="230", k="20")   # README's deep link
    model, data = fame_core.load(REPO / "checkpoints" / "sports-fame-gated")
    seq, target = fame_core.user_example(data, "230")
    insp = fame_core.inspect(model, seq, target, top_k=20)
    assert shown_lists(at) == [insp.top["head:0"].tolist(), insp.top["head:1"].tolist(), insp.top["gated"].tolist()]
    note = [c.value for c in at.caption if "fixed bias of 16" in c.value]
    assert len(note) == 1 and "head 0: 10,180 items, head 1: 8,177 items" in note[0]
    # the documented story: the larger gate is head 1's, whose part holds the target, and it ranks it better
    assert insp.gates[1] > insp.gates[0] and insp.target_rank["head:1"] < insp.target_rank["head:0"]
    assert int(model.item_cluster[target]) == 1
    assert not [c for c in at.caption if "temperature" in c.value]    # its gate is read as trained


def test_a_gate_read_at_a_temperature_says_so_beside_the_gates():
    from tests.conftest import needs_shared

    needs_shared("amazon/Beauty.txt")
    at = run_app(checkpoint="beauty-fame-gated", user="3", k="20")
    model, data = fame_core.load(REPO / "checkpoints" / "beauty-fame-gated")
    assert model.config.gate_temperature == 2.0
    seq, target = fame_core.user_example(data, "3")
    insp = fame_core.inspect(model, seq, target, top_k=20)
    assert shown_lists(at) == [insp.top["head:0"].tolist(), insp.top["head:1"].tolist(), insp.top["gated"].tolist()]
    note = [c.value for c in at.caption if "temperature 2" in c.value]
    assert len(note) == 1 and "softer" in note[0]


BAD_COUNTS = ["inf", "-inf", "1e309", "abc", "-5", "0", "101"]


@pytest.mark.parametrize("value", BAD_COUNTS)
def test_a_bad_k_is_a_visible_warning_and_the_box_shows_the_k_used(value):
    at = run_app(user="3", k=value)
    used = {"-5": 1, "0": 1, "101": 100}.get(value, 20)
    warnings = [w.value for w in at.warning]
    assert warnings == [w for w in warnings if f"`k={value}`" in w and f"using k={used}" in w]
    assert len(at.warning) == 1
    assert at.number_input(key="k").value == used and at.query_params["k"] == str(used)
    assert all(len(items) == used for items in shown_lists(at))


@pytest.mark.parametrize("value", BAD_COUNTS)
def test_a_bad_user_is_a_visible_warning_and_the_box_shows_the_user_shown(demo, value):
    if demo[1].has_user(value):           # the demo world has users 1..2000: 101 is one of them
        pytest.skip(f"{value} is a real user of the demo world")
    at = run_app(user=value)
    user = default_user(demo[1])
    assert len(at.warning) == 1 and f"`user={value}`" in at.warning[0].value and f"showing user {user}" in at.warning[0].value
    assert at.text_input(key="user").value == user and at.query_params["user"] == user
    assert at.subheader[0].value == f"History of user {user}"


# every whole-number URL parameter of every page, checked at the edge (session.count_param); the
# browser test (tests/test_browser.py) loads the same links in chromium
NUMERIC_PARAMS = {"views/case_study.py": ("k", "head"), "views/facet_explorer.py": ("item",),
                  "views/cohort.py": ("k",), "views/compare.py": ("k",), "views/interventions.py": ("k",)}
BAD_NUMBERS = ["inf", "1e309", "-1", "nan", "abc"]


@pytest.mark.parametrize("page", NUMERIC_PARAMS)
def test_every_numeric_link_parameter_of_every_page_is_a_warning_never_an_exception(page):
    keys = NUMERIC_PARAMS[page]
    for value in BAD_NUMBERS:
        params = {key: value for key in keys}
        # AppTest opens the facets page (url path /facets) only by switching after a first run; the
        # others as a deep link, before the case study (which has a k of its own) could rewrite k
        at = run_app(page, **params) if page == "views/facet_explorer.py" else deep_link(page, **params)
        warnings = [w.value for w in at.warning]
        assert all(sum(f"`{key}={value}`" in w for w in warnings) == 1 for key in keys), (value, warnings)
        assert all(at.query_params[key] in ("0", "1", "20") for key in keys if key in at.query_params), at.query_params


def _damage_config(d):
    (d / "config.json").write_text("{not json")


def _cut_weights(d):
    (d / "weights.safetensors").write_bytes((d / "weights.safetensors").read_bytes()[:1000])


def _dataset_is_a_list(d):
    (d / "dataset.json").write_text("[1, 2]")


def _deeply_nested_config(d):
    (d / "config.json").write_text("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("damage", [_damage_config, _cut_weights, _dataset_is_a_list, _deeply_nested_config])
def test_a_damaged_checkpoint_under_a_root_is_one_line_not_a_traceback(tmp_path, monkeypatch, damage):
    import shutil
    import streamlit as st

    shutil.copytree(REPO / "checkpoints" / "demo", tmp_path / "roots" / "broken")
    damage(tmp_path / "roots" / "broken")
    monkeypatch.setenv("FAME_CHECKPOINTS", str(tmp_path / "roots"))
    st.cache_resource.clear()
    at = run_app(checkpoint="roots/broken")          # run_app asserts that nothing was raised
    assert len(at.error) == 1 and "\n" not in at.error[0].value and "broken" in at.error[0].value
    assert [t.value for t in at.title] == ["FAME workbench"]   # the sidebar only: no page over a missing model


def test_first_render_of_the_case_study_draws_everything_without_the_facet_checks(monkeypatch, tmp_path):
    from fame_core import facets

    monkeypatch.setenv("FAME_CACHE", str(tmp_path))       # nothing measured yet for this checkpoint
    calls = []
    from fame_core import verdicts

    for module, name in ((facets, "head_alignment"), (facets, "planted_checks"), (facets, "real_checks"),
                         (verdicts, "verdicts"), (fame_core, "inspect")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name, **kw: calls.append(_name) or _real(*a, **kw))
    at = run_app(user="3")
    assert calls == ["inspect"]                                   # lists, gates and maps: one inspection, no checks
    assert len(at.table) == 2 and len(page_svgs(at)) == 1 + 2 * 2   # lists, target ranks; gates + 2 heads x 2 maps
    assert not any(m.value.startswith("**Specialisation checks**") for m in at.markdown)
    at.toggle(key="checks").set_value(True).run()                 # asked for: measured after everything else
    assert "head_alignment" in calls and "verdicts" in calls      # issue 41: the badges read the verdicts
    assert any(m.value.startswith("**Specialisation checks**") for m in at.markdown)
    order = [getattr(e, "type", "") if not hasattr(e, "value") or not isinstance(e.value, str) else e.value
             for e in at.main]                                    # every element, in page order
    verdict = next(i for i, e in enumerate(order) if str(e).startswith("**Specialisation checks**"))
    assert verdict > max(i for i, e in enumerate(order) if e in ("table", "image"))


def test_app_heatmaps_use_the_declared_colour_scale(demo):
    from fame_core import scales

    model, data = demo
    insp = fame_core.inspect(model, *fame_core.user_example(data, "3"), top_k=20)
    for policy in ("unit", "own"):
        at = run_app(user="3", scale=policy, interactive="true")
        router = plotly_spec(at, 2)["data"][0]                    # head 0's router map
        declared = scales.router_scale(insp, 0, policy)
        assert router["zmin"] == 0 and router["zmax"] == pytest.approx(declared.vmax, rel=1e-6)
        assert f"{declared.uniform:.3g} = 1/4 uniform" in router["colorbar"]["ticktext"]


def test_a_target_already_in_the_history_gets_an_explanation_not_a_rank(demo):
    model, data = demo
    seq, target = fame_core.user_example(data, "1")
    assert target in set(seq)                                     # user 1: the target is one of the inputs
    at = run_app(user="1")
    assert len(at.info) == 1 and f"The target (item {target}) is already in this history" in at.info[0].value
    ranks = next(d.value for d in at.table if "target rank" in d.value.columns)
    assert (ranks["target rank"] == "in history").all()
    assert not any("target rank" in m.value for m in at.markdown)   # no bare rank 601 of 600 anywhere
    assert target_marks(at.table[0].value) == 0                  # history items are in no list


def target_marks(table) -> int:
    return sum(str(c).startswith("▶") for col in table.columns for c in table[col])


def test_next_to_the_gate_the_page_says_whether_this_gate_passed_its_check(monkeypatch, tmp_path):
    monkeypatch.setenv("FAME_CACHE", str(tmp_path))               # nothing measured yet
    at = run_app(user="3")
    gate_line = lambda: next(m.value for m in at.markdown if "badge[gate " in m.value)  # noqa: E731
    assert gate_line() == ":gray-badge[gate not checked yet: switch on the checks at the bottom of the page]"
    at.toggle(key="checks").set_value(True).run()                 # measured: the gate's verdict (issue 41)
    model, data = fame_core.load(REPO / "checkpoints" / "demo")
    from fame_core.verdicts import verdicts

    v = verdicts(model, data)["gate"]                             # read back from the disk cache
    word = "passed" if v["passed"] else "failed"
    assert gate_line().startswith(f":{'green' if v['passed'] else 'orange'}-badge[gate {word}: {v['model']:.3f} vs "
                                  f"{v['best_baseline']}")
    again = run_app(user="3")                                     # a fresh session reads the verdict from disk
    assert any(f"badge[gate {word}" in m.value for m in again.markdown)
    sasrec = run_app(checkpoint="demo-sasrec")
    assert any(m.value == ":gray-badge[no gate: this model sums its heads]" for m in sasrec.markdown)


def test_the_servers_warm_up_fills_the_caches_the_first_page_reads(monkeypatch, capsys):
    """app/serve.py's lifespan hook: the default checkpoint and --warm names are opened and one case
    study drawn through the app's cached functions; a bad name is one warning, not a failure."""
    import sys as _sys

    monkeypatch.syspath_prepend(str(REPO / "app"))
    import serve
    import session

    session.inspect.clear()
    session.figure_svg.clear()
    assert serve.warm_up(["--warm", "demo-sasrec", "--warm", "demo", "--warm", "nosuch", "--warm"]) == ["demo", "demo-sasrec"]
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: --warm needs a checkpoint name, e.g. --warm sports-fame",
                   next(e for e in err if e.startswith("warning: --warm nosuch: no such checkpoint (found: "))]
    model, data = fame_core.load(REPO / "checkpoints" / "demo")
    seq, target = data.example(data.user_row(default_user(data)), "test")
    calls = []
    monkeypatch.setattr(fame_core, "inspect", lambda *a, **k: calls.append(a))
    path = session.available_checkpoints()["demo"]
    session.inspect(path, None, tuple(int(v) for v in seq), target, 20)       # what the page asks: cached
    assert calls == [] and _sys.modules["serve"] is serve


def test_badges_are_green_only_when_the_verdict_passed_and_name_the_best_baseline(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "app"))
    import badges

    from fame_core import verdicts

    model, data = fame_core.load(REPO / "checkpoints" / "demo")
    failed = {"passed": False, "model": 0.8069, "baselines": [{"name": "history's majority head", "value": 0.8186}],
              "best_baseline": "history's majority head", "margin": -0.0117, "ci95": [-0.0150, -0.0084], "p": 1e-7,
              "test": verdicts.MCNEMAR, "users": 35597, "split": "test"}
    monkeypatch.setattr(verdicts, "is_cached", lambda *a, **k: True)
    monkeypatch.setattr(verdicts, "verdicts", lambda *a, **k: {"gate": failed})
    assert badges.gate_badge(model, "p", None, data) == (
        ":orange-badge[gate failed: 0.807 vs history's majority head 0.819 · margin -0.012 (95 % CI -0.015 to -0.008)]")
    passed = dict(failed, passed=True, model=0.85, margin=0.0314, ci95=[0.02, 0.04])
    assert badges.verdict_badge("gate", passed).startswith(":green-badge[gate passed: 0.850 vs history's majority head")
    # a positive margin whose verdict did not pass (interval reaching 0) is not green
    assert badges.verdict_badge("gate", dict(passed, passed=False, ci95=[-0.001, 0.06])).startswith(":orange-badge[")
    assert badges.verdict_badge("gate", {"passed": False, "reason": "a sasrec model has no gate"}) == \
        ":gray-badge[gate: not checked · a sasrec model has no gate]"
