"""Item tables (issue 17): multi-facet CSV/TSV and RecBole .item files, and their one-line errors."""

import subprocess
import sys

import pytest

from fame_core.cli import main
from fame_core.data import load_dataset
from fame_core.errors import DataError
from fame_core.items import add_item_table, read_item_table, read_recbole_items


@pytest.fixture
def seqfile(tmp_path):
    """A sequence file with items 1..6 (user item item ...)."""
    path = tmp_path / "shop.txt"
    path.write_text("1 1 2 3 4\n2 2 3 5 6\n3 1 4 5 6\n4 6 5 4 3\n")
    return path


def test_csv_with_multi_valued_and_numeric_facets(tmp_path, seqfile):
    table = tmp_path / "items.csv"
    rows = ["item_id,title,genres,brand,price"]
    prices = [1.5, 2.25, 3.75, 4.1, 5.9, 7.35]
    for i, p in zip(range(1, 7), prices):
        rows.append(f"{i},Thing {i},{'Action|Drama' if i % 2 else 'Comedy'},{'acme' if i < 4 else 'zenith'},{p}")
    table.write_text("\n".join(rows) + "\n")
    data = add_item_table(load_dataset(seqfile), table)
    assert set(data.facets) >= {"genres", "brand", "price"}
    assert data.facets["genres"][1] == ("Action", "Drama") and data.facets["genres"][2] == ("Comedy",)
    assert data.facets["brand"][5] == ("zenith",)
    # 6 decimal prices are not more than 20 distinct values: kept as categories
    assert data.facets["price"][1] == ("1.5",)
    assert data.label(1) == "Thing 1 · Action|Drama · acme · 1.5"
    assert data.describe()["facets"]["genres"] == 3
    assert data.source["options"]["items"] == "items.csv" and "items.csv" in data.source["sha256"]


def test_a_price_column_with_many_values_is_banded(tmp_path):
    table = tmp_path / "items.tsv"
    table.write_text("id\tprice\n" + "".join(f"{i}\t{i * 1.37:.2f}\n" for i in range(1, 41)))
    ids, titles, facets = read_item_table(table)
    bands = {v for (v,) in facets["price"]}
    assert len(ids) == 40 and titles is None and 2 <= len(bands) <= 5
    assert all("-" in b for b in bands)


def test_recbole_item_file_tokens_sequences_and_floats(tmp_path, seqfile):
    item = tmp_path / "shop.item"
    item.write_text("item_id:token\tmovie_title:token_seq\tgenre:token_seq\tyear:token\tscore:float\n"
                    + "".join(f"{i}\tT{i}\tsci fi\t{1990 + i}\t{i / 10}\n" for i in range(1, 7)))
    ids, titles, facets = read_recbole_items(item)
    assert ids == [str(i) for i in range(1, 7)] and titles == [f"T{i}" for i in range(1, 7)]
    assert facets["genre"][0] == ("sci", "fi") and facets["year"][2] == ("1993",)
    assert "score" in facets and all(len(v) == 1 for v in facets["score"])
    data = load_dataset(seqfile)          # picked up beside the sequence file: shop.item
    assert "genre" in data.facets and data.facets["year"][6] == ("1996",) and data.label(2).startswith("T2 · sci|fi")


@pytest.mark.parametrize("text, message", [
    ("item_id,genre\n1,a\n1,b\n", "appears twice"),
    ("item_id,genre\n1,\n2,\n", "facet 'genre' is empty"),
    ("item_id\n1\n2\n", "at least one facet column"),
    ("item_id,genre\n", "no items"),
    ("item_id,genre\n,a\n", "empty id"),
    ("item_id,genre\n901,a\n902,b\n", "none of its 2 ids"),
])
def test_malformed_tables_are_one_line_errors(tmp_path, seqfile, capsys, text, message):
    table = tmp_path / "bad.csv"
    table.write_text(text)
    with pytest.raises(DataError, match=message):
        add_item_table(load_dataset(seqfile), table)
    assert main(["data", "describe", str(seqfile), "--items", str(table)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


@pytest.mark.parametrize("text, message", [
    ("item_id\tgenre\n1\ta\n", "must look like name:type"),
    ("id:token\tgenre:token\n1\ta\n", "lacks the field item_id:token"),
    ("item_id:token\tscore:float\n1\tcheap\n", "not a finite number"),
])
def test_malformed_recbole_files_are_one_line_errors(tmp_path, text, message):
    item = tmp_path / "bad.item"
    item.write_text(text)
    with pytest.raises(DataError, match=message):
        read_recbole_items(item)


def test_training_off_a_terminal_writes_one_line_per_epoch_and_no_carriage_returns(tmp_path):
    """Progress bars only on a TTY: a log (stderr a file) gets no carriage-return progress."""
    log = tmp_path / "train.log"
    with open(log, "w") as err:
        rc = subprocess.run([sys.executable, "-m", "fame_core", "train", "--data", "synthetic:n_users=120,n_items=40",
                             "--epochs", "2", "--out", str(tmp_path / "run")], stdout=err, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, timeout=300).returncode
    text = log.read_text()
    assert rc == 0 and "\r" not in text
    assert sum(line.startswith("epoch ") for line in text.splitlines()) == 2


def test_short_rule_is_the_title_or_the_id_never_anonymous_value_ids(tmp_path, seqfile):
    """Issue 42: 'short' labels of Amazon items were "item 4144 · attribute 1778|..." in every cell."""
    from fame_core.data import add_item_attributes
    from fame_core.lists import SHORT_WIDTH, item_text

    (tmp_path / "items.csv").write_text("item_id,title,genres\n" + "".join(f"{i},T{i},sci|fi\n" for i in range(1, 7)))
    data = add_item_table(load_dataset(seqfile), tmp_path / "items.csv")
    assert item_text(2, data.label, "short") == "T2" and data.label(2) == "T2 · sci|fi"   # the title takes over
    assert item_text(2, data.label, "ids") == "item 2"
    plain = load_dataset(seqfile)
    (tmp_path / "attrs.json").write_text('{"1": [1778, 2, 13, 165, 2, 13]}')
    add_item_attributes(plain, tmp_path / "attrs.json")
    assert item_text(1, plain.label, "short") == "item 1"
    assert item_text(1, plain.label, "full") == "item 1 · attribute 1778|2|13 +1 more"
    assert item_text(1, lambda v: "x" * 40, "short") == "x" * (SHORT_WIDTH - 1) + "…"   # plain functions: cut
