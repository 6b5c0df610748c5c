"""A temperature on a trained gate (fame_core.facets.gate_temperature; the script
experiments/gate_temperature.py is tested in tests/experiments/test_gate_temperature.py)."""

import pytest
import torch

from fame_core import facets
from fame_core.errors import ConfigError
from tests.conftest import make_model


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
def test_the_chosen_temperature_is_the_largest_gated_ndcg_and_1_on_ties():
    assert facets.choose_gate_temperature({0.5: 0.070, 1.0: 0.072, 2.0: 0.073, 4.0: 0.071}) == 2.0
    assert facets.choose_gate_temperature({0.5: 0.070, 1.0: 0.072, 2.0: 0.072}) == 1.0        # a tie keeps the trained gate
    assert facets.choose_gate_temperature({2.0: 0.072, 1.0: 0.072 + 1e-15}) == 1.0              # float noise is a tie
