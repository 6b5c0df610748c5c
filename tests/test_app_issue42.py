"""Issue 42 in the app, headlessly (AppTest): what each page shows is true of the model and the
machine it runs on, and its figures are readable (plotly specs read back from the page)."""

import json

from tests.conftest import deep_link


def specs(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_compare_shows_only_what_each_model_has_and_names_both_checkpoints_in_the_sidebar():
    at = deep_link("views/compare.py", a="demo-sasrec", b="demo", user="42")
    groups = {g.key: g for g in at.get("button_group")}
    sasrec, fame = groups["attr_a_score"], groups["attr_b_score"]
    shown = [o.content for o in sasrec.proto.options]
    assert not any("gate" in o for o in shown) and "full score (heads summed)" in shown, shown
    assert any("gated" in o.content for o in fame.proto.options)
    legends = {s["layout"]["title"]["text"]: [t.get("name", "") for t in s["data"]] for s in specs(at)
               if "per history position" in s["layout"]["title"]["text"]}
    assert len(legends) == 2
    sasrec_legend = next(v for t, v in legends.items() if t.startswith("full score"))
    assert not any("expert" in n or "router" in n or "gate" in n for n in sasrec_legend), sasrec_legend
    # a SASRec has no gate: no gate line under its list
    assert sum(c.value.startswith("gates:") for c in at.caption) == 1
    side = " ".join(c.value for c in at.sidebar.caption)
    assert "a: **demo-sasrec**" in side and "b: **demo**" in side and "does not use this checkpoint" in side
    scatter = next(s for s in specs(at) if s["layout"]["title"]["text"].startswith("Target rank per user"))
    for axis in ("xaxis", "yaxis"):
        assert scatter["layout"][axis]["tickvals"] == [1, 10, 100], scatter["layout"][axis]
