"""Every reader on small files, including malformed lines, empty users and unknown ids."""

import json

import numpy as np
import pytest

from fame_core.data import (add_item_attributes, kcore, load_dataset, read_interactions,
                            read_movielens, read_sequence_file)
from fame_core.errors import DataError
from fame_core.synthetic import make_facet_world
from tests.conftest import needs_shared

pytestmark = pytest.mark.fast  # the fast tier: `python -m pytest -m fast`


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_sequence_file_reads_users_in_order(tmp_path):
    p = write(tmp_path, "toy.txt", "1 3 4 5\n2 1 2\n\n7 5 5 2 6\n")
    d = read_sequence_file(p)
    assert d.user_ids == ["1", "2", "7"] and d.n_items == 6 and d.n_actions == 9
    assert d.sequences[2].tolist() == [5, 5, 2, 6]
    assert d.example(d.user_row(7), "test")[0].tolist() == [5, 5, 2] and d.example(0, "test")[1] == 5
    assert d.example(0, "valid") == (pytest.approx([3]), 4)
    with pytest.raises(DataError, match="user '2' has 2 item"):
        d.example(1, "test")
    assert d.splittable_rows().tolist() == [0, 2]
    with pytest.raises(DataError, match="unknown user '9'"):
        d.user_row(9)


@pytest.mark.parametrize("text,message", [
    ("1 2 3\n2 4 x 5\n", r"toy.txt:2: expected whole-number item ids .* found 'x'"),
    ("1 2 3\n2\n", r"toy.txt:2: user 2 has no items"),
    ("1 2 0 3\n", r"toy.txt:1: item id 0 is invalid"),
    ("1 2 3\n1 4 5\n", r"toy.txt:2: user 1 appears twice"),
    ("\n\n", r"no users found"),
])
def test_sequence_file_errors_name_the_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_sequence_file(write(tmp_path, "toy.txt", text))


def test_item_attributes_attach_and_unknown_items_are_refused(tmp_path):
    d = read_sequence_file(write(tmp_path, "toy.txt", "1 1 2 3\n2 2 3 1\n"))
    add_item_attributes(d, write(tmp_path, "a.json", json.dumps({"1": [2, 7], "3": [2]})))
    assert d.facets["attribute"][1] == ("2", "7") and d.facets["attribute"][2] == ()
    assert d.label(1) == "item 1 · attribute 2|7"      # two values: all shown (see the capping test below)
    with pytest.raises(DataError, match="item '9' is not an item"):
        add_item_attributes(d, write(tmp_path, "b.json", json.dumps({"9": [1]})))
    with pytest.raises(DataError, match="not valid JSON"):
        add_item_attributes(d, write(tmp_path, "c.json", "{oops"))


def test_labels_show_each_value_once_in_first_appearance_order_capped(tmp_path):
    """Issue 42: Amazon labels were raw, repeated id lists ("attribute 23|2|28|29|157|144|192|2|28|29|157|...")."""
    from fame_core.dataset import LABEL_VALUES, facet_text

    assert LABEL_VALUES == 3
    assert facet_text(("23", "2", "28", "29", "157", "144", "192", "2", "28", "29", "157")) == "23|2|28 +4 more"
    assert facet_text(("7", "7", "2")) == "7|2" and facet_text(()) == "" and facet_text(("a", "b", "c")) == "a|b|c"
    assert facet_text(("a", "b", "c", "d"), cap=1) == "a +3 more"
    d = read_sequence_file(write(tmp_path, "toy.txt", "1 1 2 3\n2 2 3 1\n"))
    add_item_attributes(d, write(tmp_path, "a.json", json.dumps({"1": [23, 2, 28, 29, 2, 28, 157], "2": [5, 5]})))
    assert d.label(1) == "item 1 · attribute 23|2|28 +2 more" and d.label(2) == "item 2 · attribute 5"
    assert d.label(1, short=True) == "item 1"                 # anonymous ids add width and no information
    d.facets["genre"] = [(), ("Drama", "Drama", "Crime"), (), ()]
    assert d.label(1, short=True) == "item 1 · Drama|Crime"   # named values are kept in the short form
    d.titles = ["", "Tent, two-person", "", "Stove"]          # an item table's titles take over
    assert d.label(1) == "Tent, two-person · Drama|Crime" and d.label(1, short=True) == "Tent, two-person"
    assert d.label(2) == "item 2 · attribute 5"               # no title: the id and the (capped) values


def test_load_dataset_picks_up_attributes_beside_the_sequence_file(tmp_path):
    write(tmp_path, "Toy.txt", "1 1 2 3\n2 2 3 1\n")
    write(tmp_path, "Toy_item2attributes.json", json.dumps({"2": [5]}))
    d = load_dataset(tmp_path / "Toy.txt")
    assert d.facets["attribute"][2] == ("5",) and d.source["reader"] == "sequence-file"
    assert set(d.source["sha256"]) == {"Toy.txt", "Toy_item2attributes.json"}


def ratings_rows(n_users=6, n_items=6):
    # every user rates every item once; timestamps reversed for user 1 to test sorting
    rows = []
    for u in range(1, n_users + 1):
        for i in range(1, n_items + 1):
            rows.append((u, 10 * i, 1000 + (n_items - i if u == 1 else i)))
    return rows


def test_movielens_csv_sorted_by_time_with_titles_and_genres(tmp_path):
    write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n" +
          "".join(f"{u},{m},4.0,{t}\n" for u, m, t in ratings_rows()))
    write(tmp_path, "movies.csv", "movieId,title,genres\n" +
          "".join(f'{10 * i},"Movie {i}, The (199{i})",Action|Comedy\n' for i in range(1, 7)))
    d = read_movielens(tmp_path)
    assert d.n_users == 6 and d.n_items == 6 and d.source["reader"] == "movielens"
    assert d.item_ids[1:] == ["10", "20", "30", "40", "50", "60"]
    assert d.sequences[0].tolist() == [6, 5, 4, 3, 2, 1]          # user 1: newest rating was of movie 10
    assert d.sequences[1].tolist() == [1, 2, 3, 4, 5, 6]
    assert d.label(1) == "Movie 1, The (1991) · Action|Comedy · 1990s"
    assert d.facets["decade"][1] == ("1990s",) and d.facets["genre"][1] == ("Action", "Comedy")
    assert load_dataset(tmp_path).fingerprint() == d.fingerprint()


def test_movielens_dat_and_u_data(tmp_path):
    (tmp_path / "m1").mkdir()
    write(tmp_path / "m1", "ratings.dat", "".join(f"{u}::{m}::5::{t}\n" for u, m, t in ratings_rows()))
    write(tmp_path / "m1", "movies.dat", "".join(f"{10 * i}::Film {i} (2000)::Drama\n" for i in range(1, 7)))
    d1 = read_movielens(tmp_path / "m1")
    assert d1.n_users == 6 and d1.label(2) == "Film 2 (2000) · Drama · 2000s"
    (tmp_path / "m100").mkdir()
    write(tmp_path / "m100", "u.data", "".join(f"{u}\t{m}\t3\t{t}\n" for u, m, t in ratings_rows()))
    d2 = read_movielens(tmp_path / "m100" / "u.data")
    assert d2.fingerprint() == d1.fingerprint()


def test_movielens_malformed_file_is_a_clear_error(tmp_path):
    write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n1,2,3,soon\n")
    with pytest.raises(DataError, match="ratings.csv: cannot read MovieLens ratings"):
        read_movielens(tmp_path)
    with pytest.raises(DataError, match="no MovieLens ratings file"):
        read_movielens(tmp_path / "..")


def test_interactions_csv_with_and_without_header_and_recbole_inter(tmp_path):
    rows = ratings_rows()
    a = read_interactions(write(tmp_path, "a.csv", "user,item,timestamp\n" + "".join(f"{u},{m},{t}\n" for u, m, t in rows)))
    b = read_interactions(write(tmp_path, "b.csv", "".join(f"{u},{m},{t}\n" for u, m, t in rows)))
    c = read_interactions(write(tmp_path, "c.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" +
                                "".join(f"{u}\t{m}\t1\t{t}\n" for u, m, t in rows)))
    assert a.fingerprint() == b.fingerprint() == c.fingerprint()
    assert c.source["reader"] == "recbole-inter"
    with pytest.raises(DataError, match="row 2 has a timestamp that is not a number"):
        read_interactions(write(tmp_path, "d.csv", "user,item,timestamp\n1,2,3\n1,3,later\n"))
    with pytest.raises(DataError, match="expected columns user,item,timestamp"):
        read_interactions(write(tmp_path, "e.csv", "user,item\n1,2\n"))
    with pytest.raises(DataError, match="lacks field"):
        read_interactions(write(tmp_path, "f.inter", "user_id:token\tx:float\n1\t2\n"))


def test_kcore_repeats_until_stable():
    import pandas as pd
    # item 6 is seen once -> dropped; user 4 is left with one item -> dropped; that leaves item 3
    # with one interaction -> dropped on the second pass, and then user 3 too
    pairs = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 2), (3, 3), (4, 3), (4, 6)]
    df = pd.DataFrame({"user": [u for u, _ in pairs], "item": [i for _, i in pairs], "timestamp": range(8)})
    out = kcore(df, 2)
    assert sorted(out["user"].unique()) == [1, 2] and sorted(out["item"].unique()) == [1, 2]
    assert kcore(df, 1).equals(df)


def test_synthetic_world_is_deterministic_and_keeps_the_truth():
    a, b = make_facet_world(seed=5, n_users=50), make_facet_world(seed=5, n_users=50)
    c = make_facet_world(seed=6, n_users=50)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    t = a.truth
    assert len(t["dominant_facet"]) == 50 and set(t["dominant_facet"]) <= {"genre", "actor"}
    for u in range(50):
        facet = t["dominant_facet"][u]
        seq, active = a.sequences[u], t["active_value"][u]
        assert set(active) <= set(t["preferred_values"][u])
        on_value = [a.facets[facet][item][0] == v for item, v in zip(seq, active)]
        assert np.mean(on_value) > 0.7      # items follow the active value except for noise
    assert load_dataset("synthetic:seed=5,n_users=50").fingerprint() == a.fingerprint()
    with pytest.raises(DataError, match="bad synthetic option"):
        load_dataset("synthetic:colour=3")


def test_load_dataset_errors(tmp_path):
    with pytest.raises(DataError, match="data not found"):
        load_dataset(tmp_path / "missing.txt")
    write(tmp_path, "a.txt", "1 2 3\n")
    write(tmp_path, "b.txt", "1 2 3\n")
    with pytest.raises(DataError, match="cannot tell which data file"):
        load_dataset(tmp_path)


def test_beauty_and_sports_match_the_paper_table_1():
    beauty = load_dataset(needs_shared("amazon/Beauty.txt"))
    assert (beauty.n_users, beauty.n_items, beauty.n_actions) == (22363, 12101, 198502)
    assert "attribute" in beauty.facets
    sports = load_dataset(needs_shared("amazon/Sports_and_Outdoors.txt"))
    # Table 1 prints 25,598 users for Sports; the file (and ICLRec's statistics) has 35,598
    assert (sports.n_users, sports.n_items, sports.n_actions) == (35598, 18357, 296337)
    assert sports.user_ids[229] == "230"


def test_movielens_small_from_shared_data():
    d = load_dataset(needs_shared("ml-latest-small"))
    assert d.n_users == 610 and d.titles is not None and "genre" in d.facets
    assert d.label(1).startswith("Toy Story (1995)")
