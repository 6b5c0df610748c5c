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


def test_cohort_charts_size_metric_axes_to_the_data_and_keep_labels_and_titles_whole():
    """Issue 42.4: HR/NDCG of 0.01-0.07 on a 0..1 axis were slivers; 'uniform 1/H = 0.5' was clipped
    at the right of the gate histograms and sat on a bar; 'Users whose largest gate is eac…' was cut."""
    at = deep_link("views/cohort.py", checkpoint="demo", slice="history_length")
    by_key = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    metric = [by_key["metrics_chart"], by_key["bucket_chart"]]
    for spec in metric:
        values = [v for t in spec["data"] if t["type"] == "bar" for v in decoded(t["y"])]
        lo, hi = spec["layout"]["yaxis"]["range"]
        assert lo == 0 and abs(hi - 1.15 * max(values)) < 1e-9, (hi, max(values))
        assert "0 to the largest value" in spec["layout"]["yaxis"]["title"]["text"]
    gate_row = [by_key[k] for k in by_key if k.startswith("gate_hist_") or k in ("entropy_hist", "top_gate_chart")]
    assert len(gate_row) == 4
    # characters a line of a title has in its column at 1280 px (a column of four: 20)
    budgets = {k: 20 if spec in gate_row else 40 if k.startswith("load_chart_") else 50 if k == "metrics_chart" else 80
               for k, spec in by_key.items()}
    for key, spec in by_key.items():
        layout = spec["layout"]
        for a in layout.get("annotations", []):     # inside the plotting area: anchored away from the edge it is at
            x = a.get("x", 0.5)
            assert a.get("xref", "x").endswith("domain") or a.get("xanchor") in ("left", "right", "center"), a
            assert not (x >= 0.9 and a.get("xanchor", "auto") in ("left", "auto")), a
        title = layout["title"]["text"]
        assert "…" not in title and "..." not in title
        assert all(len(line) <= budgets[key] for line in title.split("<br>")), (key, title)
    for spec in gate_row:
        if any(t.get("line", {}).get("dash") == "dash" for t in spec["data"]) or spec["layout"].get("shapes"):
            assert any(t.get("name", "").startswith("uniform 1/H") for t in spec["data"]), spec["data"]


def decoded(values):
    """A plotly array as the page got it: a list, or a typed array ({dtype, bdata})."""
    import base64

    import numpy as np

    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)
