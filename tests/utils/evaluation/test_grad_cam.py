"""utils/evaluation/grad_cam.py: Grad-CAM of the predicted EF: range, clip shape, locality (it lights up where the
signal is, frozen encoder or not), and the model left as it was."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import models
from utils.evaluation.grad_cam import grad_cam


@pytest.fixture(scope="module")
def uniformer():
    torch.manual_seed(0)
    return models.get_feature_extractor("uniformer_tiny"), models.get_shallow_mlp_head(128)


def test_cam_of_uniformer_tiny_has_clip_shape_and_follows_the_input(uniformer):
    model, regressor = uniformer
    model.train()
    generator = torch.Generator().manual_seed(1)
    clip = torch.randn(3, 8, 112, 112, generator=generator)
    cam, ef = grad_cam(model, regressor, clip)
    assert cam.shape == (8, 112, 112) and cam.dtype == np.float32
    assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    with torch.no_grad():
        expected_ef = regressor.eval()(model.eval()(clip[None])[1]).item()
    assert ef == pytest.approx(expected_ef, rel=1e-5)
    # 3 x 3 cells of 32 px cover 96 of the 112 px; nothing is drawn beyond them
    assert not cam[:, 96:, :].any() and not cam[:, :, 96:].any()

    model.train()
    other, _ = grad_cam(model, regressor, torch.randn(3, 8, 112, 112, generator=generator))
    assert np.abs(other - cam).max() > 0.05
    # training mode restored, no hook left behind, no gradient left in the weights
    assert model.training and not model.norm._forward_hooks
    assert all(p.grad is None for p in model.parameters())

    stretched, _ = grad_cam(model, regressor, clip, cell_size=None)
    assert stretched.shape == (8, 112, 112) and stretched[:, 100:, 100:].any()
    last_block, _ = grad_cam(model, regressor, clip, target_layer=model.blocks4[-1])
    assert last_block.shape == (8, 112, 112) and last_block.max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="never ran"):
        grad_cam(model, regressor, clip, target_layer=model.blocks4)


class RegionNet(nn.Module):
    """Embedding = mean of a non-negative map of 32 x 32 px cells (stride 2 in time), like UniFormer's."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Conv3d(3, 4, kernel_size=(2, 32, 32), stride=(2, 32, 32), bias=False)
        nn.init.constant_(self.proj.weight, 1.0 / (3 * 2 * 32 * 32))
        self.norm = nn.ReLU()

    def forward(self, x):
        feature = self.norm(self.proj(x)).mean(dim=(2, 3, 4))
        return None, feature


@pytest.mark.parametrize("frozen", [False, True])
def test_cam_lights_up_where_the_signal_is(frozen):
    model = RegionNet().requires_grad_(not frozen)
    regressor = nn.Linear(4, 1)
    nn.init.constant_(regressor.weight, 1.0)
    clip = torch.zeros(3, 8, 112, 112)
    clip[:, 4:, 0:32, 64:96] = 1.0  # second half of the clip, top row, right-most covered cell
    cam, _ = grad_cam(model, regressor, clip)
    assert np.unravel_index(cam.argmax(), cam.shape)[1:] in {(h, w) for h in range(32) for w in range(64, 96)}
    assert cam[4:, :32, 64:96].sum() > 0.6 * cam.sum()
    assert not cam[:, :, :32].any() and not cam[:, 64:, :].any()  # the far cells stay dark
    assert cam[:2].sum() < 0.1 * cam.sum()

    # A region that lowers the EF is cut by the ReLU: nothing raises the EF, the map is all zero.
    nn.init.constant_(regressor.weight, -1.0)
    cam, _ = grad_cam(model, regressor, clip)
    assert not cam.any()
