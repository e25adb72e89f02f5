"""models/regressor.py: the shallow MLP head's output shape and its initial output, the mean EF."""
import torch
import torch.nn as nn

from models import get_shallow_mlp_head


def test_regressor_output_shape_and_initial_mean():
    regressor = get_shallow_mlp_head(32, 1).eval()
    nn.init.zeros_(regressor[-1].weight)
    out = regressor(torch.randn(5, 32))
    assert out.shape == (5, 1)
    torch.testing.assert_close(out, torch.full((5, 1), 55.6))
