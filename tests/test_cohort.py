"""Population numbers of one checkpoint (fame_core.cohort) against direct computation."""

import numpy as np
import pandas as pd
import pytest
import torch

from fame_core import cohort
from fame_core.evaluate import metrics_from_ranks, rank_users
from fame_core.inspection import inspect
from tests.conftest import make_model


def constant_gate_model(n_items, bias=(1.0, 0.0)):
    m = make_model(n_items=n_items)
    with torch.no_grad():
        m.W_g.weight.zero_()
        m.W_g.bias.copy_(torch.tensor(bias))
    return m


def test_a_constant_gate_gives_one_bin_one_top_head_and_constant_entropy(tiny_world, tmp_path):
    m = constant_gate_model(tiny_world.n_items)
    table = cohort.cohort_table(m, tiny_world, directory=tmp_path)
    g = np.exp(1.0) / (np.exp(1.0) + 1.0)
    np.testing.assert_allclose(table["gate_0"], g, rtol=1e-5)
    np.testing.assert_allclose(table["gate_entropy"], -(g * np.log(g) + (1 - g) * np.log(1 - g)) / np.log(2), rtol=1e-5)
    dist = cohort.gate_distribution(table)
    head0 = dist[dist["series"] == "head 0"]
    assert (head0["users"] > 0).sum() == 1 and head0.loc[head0["users"] > 0, "bin_lo"].item() <= g < \
        head0.loc[head0["users"] > 0, "bin_hi"].item()
    assert head0["share"].sum() == pytest.approx(1.0)
    assert cohort.top_gate_share(table)["share"].tolist() == [1.0, 0.0]
    # a constant gate is a fixed weighting: the gated rank equals that of scores g*P0 + (1-g)*P1
    insp = inspect(m, *tiny_world.example(table["row"].iloc[0]))
    mixed = g * insp.head_scores[0] + (1 - g) * insp.head_scores[1]
    np.testing.assert_allclose(insp.scores["gated"][1:], mixed[1:], rtol=1e-4, atol=1e-4)


def test_metrics_flips_and_loads_equal_direct_computation(tiny_world, tmp_path):
    m = make_model(n_items=tiny_world.n_items, seed=1)
    table = cohort.cohort_table(m, tiny_world, directory=tmp_path)
    direct = rank_users(m, tiny_world, merges=("gated", "concat", "head:0", "head:1"))
    assert len(table) == len(direct["rows"])
    metrics = cohort.merge_metrics(table, k=10).set_index("merge")
    for mode in ("gated", "concat", "head:0", "head:1"):
        want = metrics_from_ranks(direct["ranks"][mode], ks=(10,))
        assert metrics.loc[mode, "NDCG@10"] == pytest.approx(want["NDCG@10"])
        assert metrics.loc[mode, "HR@10"] == pytest.approx(want["HR@10"])
    flips = cohort.hit_flips(table, k=10)
    g, c = direct["ranks"]["gated"] < 10, direct["ranks"]["concat"] < 10
    assert flips["gated_hit_concat_miss"] == int((g & ~c).sum()) and flips["concat_hit_gated_miss"] == int((c & ~g).sum())
    assert sum(flips[k] for k in ("gated_hit_concat_miss", "concat_hit_gated_miss", "both_hit", "both_miss")) == len(table)
    assert len(cohort.flip_users(table, "gated_hit_concat_miss", 10)) == flips["gated_hit_concat_miss"]
    # expert load per position: the router's argmax at every position of a few users, read from inspect
    for i in range(5):
        row = table.iloc[i]
        insp = inspect(m, tiny_world.example(int(row["row"]))[0])
        for h in range(2):
            counts = np.bincount(insp.router[h].argmax(1), minlength=3)
            assert [row[f"positions_{h}_e{n}"] for n in range(3)] == counts.tolist()
            assert row[f"expert_{h}"] == insp.router[h, -1].argmax()
    load = cohort.expert_load(table)
    for h in range(2):
        part = load[load["head"] == h]
        assert part["share_of_positions"].sum() == pytest.approx(1.0) and part["share_of_users"].sum() == pytest.approx(1.0)
        np.testing.assert_allclose(part["uniform"], 1 / 3)


def test_slices_partition_the_users(tiny_world, tmp_path):
    m = make_model(n_items=tiny_world.n_items, seed=2)
    table = cohort.cohort_table(m, tiny_world, directory=tmp_path)
    assert {"history_length", "popularity", "dominant_genre", "dominant_actor"} <= set(cohort.slice_columns(table))
    for column in cohort.slice_columns(table):
        per = cohort.by_slice(table, column, cohort.top_gate_share)
        sizes = per.drop_duplicates("bucket")["bucket_users"]
        assert sizes.sum() == len(table)
        assert (per.groupby("bucket")["users"].sum() == per.groupby("bucket")["bucket_users"].first()).all()
    # popularity: occurrences in the training part of every sequence
    pop = cohort.item_popularity(tiny_world)
    t = int(table["target"].iloc[0])
    assert pop[t] == sum(int((s[:-2] == t).sum()) for s in tiny_world.sequences)
    assert (table["target_popularity"] == pop[table["target"]]).all()


def test_dominant_value_is_the_modal_label_of_the_seen_history():
    labels = np.array([-1, 0, 0, 1, 1, -1])          # items 1,2 -> a; 3,4 -> b; 5 -> none
    got = cohort._dominant_values([np.array([1, 3, 4]), np.array([5, 5]), np.array([3, 1, 2, 2])],
                                  labels, ["a", "b"], max_len=3)
    assert got == ["b", "(none)", "a"]               # max_len=3: the last input sees 1, 2, 2


def test_the_disk_cache_is_keyed_by_weights_and_split(tiny_world, tmp_path):
    m = make_model(n_items=tiny_world.n_items, seed=3)
    first = cohort.cohort_table(m, tiny_world, directory=tmp_path)
    again = cohort.cohort_table(m, tiny_world, directory=tmp_path)
    assert first.attrs["from_cache"] is False and again.attrs["from_cache"] is True
    pd.testing.assert_frame_equal(first.reset_index(drop=True), again.reset_index(drop=True), check_dtype=False)
    assert cohort.cohort_table(m, tiny_world, "valid", directory=tmp_path).attrs["from_cache"] is False
    other = make_model(n_items=tiny_world.n_items, seed=4)
    assert cohort.cache_path(other, tiny_world, "test", tmp_path) != cohort.cache_path(m, tiny_world, "test", tmp_path)
    assert len(list(tmp_path.glob("*.parquet"))) == 2


def test_sasrec_has_no_gate_but_per_head_metrics(tiny_world, tmp_path):
    m = make_model("sasrec", n_items=tiny_world.n_items)
    table = cohort.cohort_table(m, tiny_world, directory=tmp_path)
    assert (table["gate_entropy"] == 0).all() and cohort.experts_of(table) == 1
    summary = cohort.cohort_summary(table)
    assert summary["heads"] == 2 and summary["expert_share_of_users"] == [[1.0], [1.0]]


# ---- the Cohort page, driven headlessly -------------------------------------------------------------------

def cohort_page(**params):
    """The app opened straight on /cohort with the given URL parameters (as a deep link does)."""
    from tests.conftest import deep_link

    return deep_link("views/cohort.py", **params)


def test_cohort_page_shows_the_libraries_numbers_and_links_users():
    import json

    import fame_core
    from tests.conftest import REPO

    at = cohort_page(checkpoint="demo", k="10")
    model, data = fame_core.load(REPO / "checkpoints" / "demo")
    table = cohort.cohort_table(model, data)
    want = cohort.merge_metrics(table, 10)
    shown = at.dataframe[0].value
    np.testing.assert_allclose(shown["NDCG@10"], want["NDCG@10"].round(4))
    top = json.loads(at.get("plotly_chart")[4].proto.spec)                    # metrics, 2 gates, entropy, top gate
    y = top["data"][0]["y"]
    np.testing.assert_allclose(y if isinstance(y, list) else cohort.top_gate_share(table)["share"],
                               cohort.top_gate_share(table)["share"])
    assert any(s["y0"] == 0.5 for s in top["layout"]["shapes"])               # the uniform 1/H line
    links = at.dataframe[-1].value["case study"]
    assert links.iloc[0] == f"/?checkpoint=demo&user={table['user'].iloc[0]}"
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels.count("PDF") == 3 and labels.count("SVG") == 3 and "Users CSV" in labels


def test_cohort_page_shows_gate_accuracy_next_to_the_rules():
    import fame_core
    from fame_core import verdicts
    from tests.conftest import REPO

    at = cohort_page(checkpoint="demo", gate_rules="true")
    shown = next(d.value for d in at.dataframe if "who" in getattr(d.value, "columns", []))
    model, data = fame_core.load(REPO / "checkpoints" / "demo")
    tables = {s: cohort.cohort_table(model, data, s) for s in ("valid", "test")}
    want = verdicts.rules_table(verdicts.gate_verdict(model, data, tables).to_dict())
    assert list(shown["who"]) == list(want["who"]) and shown["who"].iloc[0] == "the model"
    np.testing.assert_allclose(shown["value"], want["value"])
    assert any("always head 0" in w for w in shown["who"]) and any("(best)" in w for w in shown["who"])
    assert any("badge[gate " in m.value for m in at.markdown)


def test_the_cohort_page_says_when_its_gates_are_read_at_a_temperature(tmp_path, monkeypatch):
    import subprocess
    import sys

    from tests.conftest import REPO

    hot = tmp_path / "roots" / "demo-hot"
    assert subprocess.run([sys.executable, "-m", "fame_core", "compact", "--checkpoint", "checkpoints/demo", "--out",
                           str(hot), "--gate-temperature", "2"], cwd=REPO, capture_output=True).returncode == 0
    monkeypatch.setenv("FAME_CHECKPOINTS", str(hot.parent))
    at = cohort_page(checkpoint="roots/demo-hot", k="10")        # a root after the first is named by its folder
    assert [c.value for c in at.caption if "temperature 2" in c.value]
    assert not [c.value for c in cohort_page(checkpoint="demo", k="10").caption if "temperature" in c.value]


def test_cohort_page_slices_and_groups_from_the_link():
    import fame_core
    from tests.conftest import REPO

    model, data = fame_core.load(REPO / "checkpoints" / "demo")
    table = cohort.cohort_table(model, data)
    bucket = cohort.bucket_order(table, "popularity")[0]
    part = cohort.slice_users(table, "popularity", bucket)
    at = cohort_page(checkpoint="demo", slice="popularity", bucket=bucket, group="gated_hit_concat_miss")
    assert at.selectbox(key="slice").value == "popularity" and at.segmented_control(key="bucket").value == bucket
    assert any(f"{len(part):,} of 2,000 users" in c.value for c in at.caption)
    users = at.dataframe[-1].value
    assert len(users) == cohort.hit_flips(part, 20)["gated_hit_concat_miss"] > 0
    assert set(users["user"]) <= set(part["user"])


def test_cohort_page_for_sasrec_and_bad_links():
    at = cohort_page(checkpoint="demo-sasrec", slice="nonsense")
    assert any("SASRec has no gate" in i.value for i in at.info)
    assert any("`slice=nonsense` is not available" in w.value for w in at.warning)


def test_population_figures_are_written_with_their_numbers(tiny_world, tmp_path):
    from fame_core import population_export as px
    from fame_core.export import save_figure

    m = make_model(n_items=tiny_world.n_items, seed=5)
    table = cohort.cohort_table(m, tiny_world, directory=tmp_path / "cache")
    for stem, (fig, numbers) in {"gates": px.gate_distribution_figure(table), "experts": px.expert_load_figure(table),
                                 "metrics": px.merge_metrics_figure(cohort.merge_metrics(table, 10), 10)}.items():
        files = save_figure(fig, numbers, tmp_path / stem, {"figure": stem})
        assert {f.suffix for f in files} == {".pdf", ".svg", ".png", ".csv", ".json"}
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:4] == b"%PDF" and b"<svg" in (tmp_path / f"{stem}.svg").read_bytes()
        written = pd.read_csv(tmp_path / f"{stem}.csv", index_col=0)
        assert len(written) == len(numbers)
    fig, _ = px.gate_distribution_figure(table)
    ax = fig.axes[0]
    assert ax.get_ylim() == (0, 1) and any(np.allclose(line.get_xdata(), 0.5) for line in ax.lines)  # uniform 1/H


@pytest.mark.parametrize("kind", ["fame", "sasrec"])
def test_the_user_table_read_from_the_cohort_table_equals_the_one_ranked_directly(kind, tiny_world, tmp_path):
    """The app's case-study user table comes from the (cached) cohort table: same rows, columns, values."""
    from fame_core.users import from_cohort, user_table

    model = make_model(kind, n_items=tiny_world.n_items)
    for split, k in (("test", 20), ("valid", 5)):
        direct = user_table(model, tiny_world, split=split, k=k)
        for attempt in range(2):                    # computed, then read back from the parquet cache
            table = cohort.cohort_table(model, tiny_world, split, directory=tmp_path)
            assert table.attrs["from_cache"] is bool(attempt)
            shared = from_cohort(table, tiny_world, k)
            pd.testing.assert_frame_equal(shared.reset_index(drop=True), direct.reset_index(drop=True),
                                          check_dtype=False)


def test_a_cache_that_cannot_be_written_gives_the_table_and_one_note(tiny_world, monkeypatch, capsys):
    monkeypatch.setenv("FAME_CACHE", "/dev/null/not-a-folder")
    model = make_model("fame", n_items=tiny_world.n_items)
    table = cohort.cohort_table(model, tiny_world, "test")
    assert len(table) == len(tiny_world.splittable_rows()) and table.attrs["from_cache"] is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("note: the cohort table was not cached (/dev/null/not-a-folder/cohort")


def test_summary_gate_numbers_are_the_table_columns_sample_statistics(tiny_world, tmp_path):
    m = make_model(n_items=tiny_world.n_items, seed=5)
    table = cohort.cohort_table(m, tiny_world, directory=tmp_path).head(7)    # few users: ddof shows
    summary = cohort.cohort_summary(table)
    for h in range(2):
        g = table[f"gate_{h}"].to_numpy()
        assert summary["gate_mean"][h] == pytest.approx(round(g.mean(), 4))
        assert summary["gate_std"][h] == pytest.approx(round(g.std(ddof=1), 4), abs=1e-4)
        assert summary["gate_std"][h] != pytest.approx(round(g.std(ddof=0), 4), abs=1e-5) or g.std() == 0
