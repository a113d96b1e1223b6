"""The gate trace recomputes the real layer: its hidden states must equal torch.nn's outputs."""

import pytest
import torch

from rnnlab.demos.gates import trace


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_trace_reproduces_the_layer(kind):
    torch.manual_seed(0)
    layer = getattr(torch.nn, kind)(7, 11, batch_first=True).double()
    x = torch.randn(5, 7, dtype=torch.float64)
    gates, hidden = trace(layer, x)
    expected, _ = layer(x[None])
    torch.testing.assert_close(hidden, expected[0], rtol=0, atol=1e-12)
    assert set(gates) == ({"input", "forget", "output"} if kind == "LSTM" else {"reset", "update"})
    for values in gates.values():
        assert values.shape == (5, 11) and 0 <= values.min() and values.max() <= 1
