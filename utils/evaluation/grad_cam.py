"""Grad-CAM of the predicted EF for one clip: a map [T, H, W] in [0, 1] over the clip's pixels (drawn by
utils/pictures/cam.py).

The map is taken at the output of ``model.norm`` (the BatchNorm after the last UniFormer stage,
[1, C, T', H', W']). The embedding is exactly the mean of that map over T', H' and W', so dEF/dA is
the same at every position and the Grad-CAM sums sum_c w_c A_c(t, h, w) add up to g . embedding, the
linear part of the predicted EF: each position gets its share of it. At the output of the last block of
``blocks4`` (before the BatchNorm) every sum lacks the BatchNorm shift, one constant that the ReLU then
cuts away, so the shares no longer add up. (``blocks4`` itself is a ModuleList that is never called:
a hook on it would never fire.)

The maintained ``grad-cam`` package (1.5.7) does handle 5-D activations in GradCAM, but it resizes with
a cubic spline (scipy zoom) after rescaling the low-resolution map to [0, 1] and stretches it over the
whole clip; here the map is upsampled trilinearly onto the pixels its cells cover (see `grad_cam`).
"""
import numpy as np
import torch
import torch.nn.functional as F

UNIFORMER_STRIDE = 32  # pixels per cell of UniFormer's last stage (patch embeddings 4 * 2 * 2 * 2)


def grad_cam(model, regressor, clip, target_layer=None, cell_size=UNIFORMER_STRIDE):
    """Grad-CAM of `regressor(model(clip)[1])` for one clip [3, T, H, W] (or [1, 3, T, H, W]).

    Returns (map [T, H, W] float32 in [0, 1], predicted EF). The map is ReLU(sum_c w_c A_c) with
    A = the output of `target_layer` (default ``model.norm``) and w_c = dEF/dA_c averaged over
    T', H', W'; divided by its maximum (all zeros when nothing raises the EF). Each cell covers
    `cell_size` pixels: UniFormer's strided patch embeddings floor the size, so at 112 px the 3 x 3
    cells see 96 px, and the map is drawn on those and left 0 on the last 16 px instead of being
    stretched over them. `cell_size=None` stretches the map over the whole frame. Frames are always
    stretched (T' = ceil(T / 2) covers every frame). Models are run in eval mode and put back after.
    """
    target_layer = model.norm if target_layer is None else target_layer
    clip = clip if clip.dim() == 5 else clip.unsqueeze(0)
    if clip.shape[0] != 1:
        raise ValueError(f"grad_cam takes one clip, got a batch of {clip.shape[0]}")
    device = next(model.parameters()).device
    # A leaf that needs a gradient: the graph reaches the target layer even when the weights are frozen.
    clip = clip.detach().to(device=device, dtype=torch.float32).requires_grad_(True)

    captured = []
    handle = target_layer.register_forward_hook(lambda module, inputs, output: captured.append(output))
    modes = [(m, m.training) for m in (model, regressor)]
    try:
        model.eval()
        regressor.eval()
        with torch.enable_grad():
            ef = regressor(model(clip)[1]).reshape(-1)[0]
            if not captured:
                raise ValueError("the target layer never ran in the forward pass (a ModuleList such as "
                                 "model.blocks4 never does: use model.blocks4[-1])")
            activation = captured[-1]
            gradient, = torch.autograd.grad(ef, activation)
    finally:
        handle.remove()
        for module, training in modes:
            module.train(training)

    weights = gradient.mean(dim=(2, 3, 4), keepdim=True)
    cam = F.relu((weights * activation.detach()).sum(dim=1, keepdim=True))  # [1, 1, T', H', W']
    return _upsample(cam, clip.shape[2:], cell_size), ef.item()


def _upsample(cam, size, cell_size):
    """[1, 1, T', H', W'] -> [T, H, W] on the pixels the cells cover, scaled to max 1."""
    frames, height, width = size
    cells_h, cells_w = cam.shape[-2:]
    covered = (height, width) if cell_size is None else (min(height, cells_h * cell_size),
                                                         min(width, cells_w * cell_size))
    cam = F.interpolate(cam, size=(frames, *covered), mode="trilinear", align_corners=False)
    cam = F.pad(cam, (0, width - covered[1], 0, height - covered[0]))
    peak = cam.max()
    cam = cam / peak if peak > 0 else cam
    return cam[0, 0].clamp(0, 1).cpu().numpy().astype(np.float32)
