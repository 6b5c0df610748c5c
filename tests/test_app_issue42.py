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
    for spec in gate_row:          # a dashed uniform line is named in the legend or under the axis, not on the plot
        if spec["layout"].get("shapes"):
            named = [t.get("name", "") for t in spec["data"]] + [spec["layout"].get("xaxis", {}).get("title", {}).get("text", "")]
            assert any("1/H" in n for n in named), named


def decoded(values):
    """A plotly array as the page got it: a list, or a typed array ({dtype, bdata})."""
    import base64

    import numpy as np

    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def test_serve_starts_without_the_missing_scriptruncontext_line():
    """app/serve.py's warm-up calls the app's cached functions outside a script run: Streamlit printed
    'missing ScriptRunContext!' on every start (issue 42.5)."""
    import subprocess
    import time

    from tests.test_browser import free_port, launch_app

    proc = launch_app(free_port(), stdout=subprocess.PIPE)
    try:
        time.sleep(1)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "You can now view" in out and "ScriptRunContext" not in out, out


def test_a_gate_value_is_not_crossed_by_the_uniform_line(monkeypatch):
    """A gate just below 1/H (0.476 with H = 2): its value label sat on the dashed uniform line."""
    import re
    from types import SimpleNamespace

    import numpy as np

    from tests.conftest import REPO

    monkeypatch.syspath_prepend(str(REPO / "app"))
    import charts
    from fame_core import svg

    gates = np.array([0.476, 0.524])
    text = svg.gates(SimpleNamespace(n_heads=2, gates=gates))
    line = float(re.search(r'<line class="uniform" x1="[\d.]+" y1="([\d.]+)"', text).group(1))
    for value in ("0.48", "0.52"):
        base = float(re.search(r'<text[^>]* y="([\d.]+)"[^>]*>' + re.escape(value) + "<", text).group(1))
        assert not base - svg.TICK - 1 <= line <= base + 1, (value, base, line)   # glyphs span [base - size, base]
    fig = charts.gates_chart(gates)
    labels = {a.text: a.y for a in fig.layout.annotations if a.text in ("0.476", "0.524")}
    assert labels["0.476"] >= 0.5 and labels["0.524"] == 0.524    # lifted above the line; the other on its bar


def test_colour_bar_segments_have_no_seams_in_the_written_figure(tmp_path):
    """Each segment of a colour bar is stroked in its own colour (a PDF at 150 dpi showed white seams)."""
    import re

    import fame_core
    from fame_core import export
    from tests.conftest import REPO

    model, data = fame_core.load(REPO / "checkpoints" / "demo")
    insp = fame_core.inspect(model, *fame_core.user_example(data, "42"), top_k=5)
    fig, table = export.expert_attention_figure(insp, 0, data.label)
    files = export.save_figure(fig, table, tmp_path / "attention", {})
    written = next(f for f in files if str(f).endswith(".svg"))
    meshes = re.findall(r'<g id="QuadMesh_\d+">(.*?)</g>', open(written).read(), re.S)
    bar = max(meshes, key=lambda m: m.count("<path"))      # the colour bar: the mesh of many thin segments
    styles = re.findall(r'style="([^"]*)"', bar)
    assert len(styles) > 50
    for style in styles:
        props = dict(p.split(": ") for p in style.split("; "))
        assert props.get("stroke") == props["fill"], style


def test_the_zip_of_all_figures_names_the_checkpoint(tmp_path, monkeypatch):
    import zipfile
    from io import BytesIO

    from tests.conftest import REPO

    monkeypatch.syspath_prepend(str(REPO / "app"))
    import session

    files = [tmp_path / "a.pdf", tmp_path / "a.json"]
    for f in files:
        f.write_text("x")
    z = zipfile.ZipFile(BytesIO(session.zip_files(files, "fame_sports-fame-gated_user230_figures")))
    assert z.namelist() == ["fame_sports-fame-gated_user230_figures/a.pdf", "fame_sports-fame-gated_user230_figures/a.json"]
    page = (REPO / "app" / "views" / "case_study.py").read_text()
    assert 'bundle = f"fame_{ctx.slug}_' in page and 'f"{bundle}.zip"' in page
