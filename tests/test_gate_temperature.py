"""A temperature on a trained gate (fame_core.facets.gate_temperature, bench/gate_temperature.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fame_core import facets
from fame_core.errors import ConfigError
from tests.conftest import make_model

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.fast
def test_the_gate_is_softmax_of_its_logits_over_tau_and_is_restored():
    model = make_model(n_heads=4)
    seq = torch.randint(1, 31, (5, 8))
    out = model(seq)
    logits = torch.log(out.gates)                       # softmax is shift-invariant: log g are logits
    for tau in (0.5, 3.0):
        with facets.gate_temperature(model, tau):
            g = model(seq).gates
        torch.testing.assert_close(g, torch.softmax(logits / tau, -1), rtol=1e-4, atol=1e-6)
    sharp = out.gates.max(-1).values
    with facets.gate_temperature(model, 0.5):
        assert (model(seq).gates.max(-1).values >= sharp - 1e-6).all()     # bolder: the top gate only grows
    torch.testing.assert_close(model(seq).gates, out.gates)               # restored on exit
    held = make_model(n_heads=4, gate_temperature=2.0)                # the same weights, holding tau = 2
    with facets.gate_temperature(held, 1.0):                          # absolute: 1 is the paper's gate
        torch.testing.assert_close(held(seq).gates, out.gates)
    assert held.config.gate_temperature == 2.0
    with pytest.raises(ValueError, match="positive"):
        with facets.gate_temperature(model, 0.0):
            pass
    with pytest.raises(ConfigError, match="applies to FAME"):
        with facets.gate_temperature(make_model("sasrec"), 2.0):
            pass


@pytest.mark.fast
def test_bad_temperatures_are_one_error_line(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "bench" / "gate_temperature.py"), "checkpoints/demo",
                        "--temperatures", "1", "-2", "--out", str(tmp_path / "t.json")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.startswith("error: --temperatures") and r.stderr.count("\n") == 1
    assert not (tmp_path / "t.json").exists()


def test_the_reading_at_tau_1_is_the_model_as_trained(tmp_path):
    out, hot = tmp_path / "t.json", tmp_path / "hot"          # a copy holding tau = 2: the readings are absolute
    assert subprocess.run([sys.executable, "-m", "fame_core", "compact", "--checkpoint", "checkpoints/demo", "--out",
                           str(hot), "--gate-temperature", "2"], cwd=REPO, capture_output=True).returncode == 0
    r = subprocess.run([sys.executable, str(REPO / "bench" / "gate_temperature.py"), str(hot),
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


@pytest.mark.fast
def test_the_chosen_temperature_is_the_largest_gated_ndcg_and_1_on_ties():
    assert facets.choose_gate_temperature({0.5: 0.070, 1.0: 0.072, 2.0: 0.073, 4.0: 0.071}) == 2.0
    assert facets.choose_gate_temperature({0.5: 0.070, 1.0: 0.072, 2.0: 0.072}) == 1.0        # a tie keeps the trained gate
    assert facets.choose_gate_temperature({2.0: 0.072, 1.0: 0.072 + 1e-15}) == 1.0              # float noise is a tie
