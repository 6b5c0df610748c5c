"""experiments/gate_temperature.py: a trained gate read at several temperatures on validation
(fame_core.facets.gate_temperature itself: tests/test_gate_temperature.py)."""

import json
import subprocess
import sys

import pytest

from fame_core import facets
from tests.conftest import REPO

pytestmark = pytest.mark.research


def test_bad_temperatures_are_one_error_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "experiments.gate_temperature", "checkpoints/demo",
                        "--temperatures", "1", "-2", "--out", str(tmp_path / "t.json")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.startswith("error: --temperatures") and r.stderr.count("\n") == 1
    assert not (tmp_path / "t.json").exists()


def test_the_reading_at_tau_1_is_the_model_as_trained(tmp_path):
    out, hot = tmp_path / "t.json", tmp_path / "hot"          # a copy holding tau = 2: the readings are absolute
    assert subprocess.run([sys.executable, "-m", "fame_core", "compact", "--checkpoint", "checkpoints/demo", "--out",
                           str(hot), "--gate-temperature", "2"], cwd=REPO, capture_output=True).returncode == 0
    r = subprocess.run([sys.executable, "-m", "experiments.gate_temperature", str(hot),
                        "--temperatures", "0.25", "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    row = res["rows"][0]
    by_tau = {x["temperature"]: x for x in row["readings"]}
    assert set(by_tau) == {0.25, 1.0}                                    # tau = 1 always read
    model, data = __import__("fame_core").load(hot)
    assert model.config.gate_temperature == 2.0
    with facets.gate_temperature(model, 1.0):
        assert by_tau[1.0]["NDCG@20"] == pytest.approx(facets.gate_merge_value(model, data, "valid")["NDCG@20"])
    assert by_tau[1.0]["NDCG@20"]["gated"] != facets.gate_merge_value(model, data, "valid")["NDCG@20"]["gated"]
    with facets.gate_temperature(model, 0.25):                       # the shortcut (only 'gated' re-ranked) is exact
        assert by_tau[0.25]["NDCG@20"] == pytest.approx(facets.gate_merge_value(model, data, "valid")["NDCG@20"])
    assert by_tau[0.25]["NDCG@20"]["gated"] != by_tau[1.0]["NDCG@20"]["gated"]
    assert row["chosen_temperature"] == max(by_tau, key=lambda t: (by_tau[t]["NDCG@20"]["gated"], t == 1.0))
    assert res["chosen_over_checkpoints"] == row["chosen_temperature"]         # one checkpoint: its own choice
