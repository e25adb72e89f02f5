"""Grad-CAM of the predicted EF for one clip, and its overlay as a video and as a PNG strip of frames.

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
import io
import os
import tempfile

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from utils.files.atomic import atomic_open
from utils.pictures.plots import cam_strip_figure, save_figure

UNIFORMER_STRIDE = 32  # pixels per cell of UniFormer's last stage (patch embeddings 4 * 2 * 2 * 2)
# Tried in order; the first that this OpenCV build can open is used, else an animated GIF (Pillow).
VIDEO_FORMATS = (("mp4v", ".mp4"), ("MJPG", ".avi"))
CLIP_FPS = 12.5  # EchoNet is filmed at 50 frames/s and clips take every 4th frame


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


def overlay(frames, cam, alpha=0.5, colormap=cv2.COLORMAP_JET):
    """RGB frames [T, H, W, 3] uint8 with the map [T, H, W] in [0, 1] coloured in. Each pixel blends
    in the colour with weight `alpha` x map, so the echo shows unchanged where the map is 0."""
    frames = np.asarray(frames, dtype=np.uint8)
    cam = np.clip(np.asarray(cam, dtype=np.float32), 0, 1)
    if frames.shape[:3] != cam.shape:
        raise ValueError(f"frames {frames.shape} and map {cam.shape} differ in size")
    levels = np.rint(cam * 255).astype(np.uint8)
    heat = np.stack([cv2.cvtColor(cv2.applyColorMap(level, colormap), cv2.COLOR_BGR2RGB) for level in levels])
    weight = alpha * cam[..., None]
    return np.rint((1 - weight) * frames + weight * heat).astype(np.uint8)


def write_cam_video(path, frames, cam, fps=CLIP_FPS, alpha=0.5):
    """Write the clip's RGB frames [T, H, W, 3] uint8 (datasets.echonet.denormalise of a clip) (left) beside
    the clip with the map overlaid (right).

    MP4 (mp4v) when this OpenCV build can encode it, else MJPG AVI, else an animated GIF: the extension
    of `path` is replaced by the one written. Returns the path written (atomically, via atomic_open).
    """
    side_by_side = np.concatenate([frames, overlay(frames, cam, alpha)], axis=2)
    stem = os.path.splitext(os.fspath(path))[0]
    for fourcc, extension in VIDEO_FORMATS:
        data = _encode_with_opencv(side_by_side, fourcc, extension, fps)
        if data:
            break
    else:
        data, extension = _encode_gif(side_by_side, fps), ".gif"
    with atomic_open(stem + extension, "wb") as f:
        f.write(data)
    return stem + extension


def _encode_with_opencv(frames, fourcc, extension, fps):
    """The encoded file's bytes, or None when this build cannot encode `fourcc`. OpenCV writes only to a
    path and picks the container by its extension, so it writes into a scratch folder first."""
    height, width = frames.shape[1:3]
    with tempfile.TemporaryDirectory() as folder:
        scratch = os.path.join(folder, "video" + extension)
        writer = cv2.VideoWriter(scratch, cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height))
        if not writer.isOpened():
            return None
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        if not os.path.exists(scratch):
            return None
        with open(scratch, "rb") as f:
            return f.read() or None  # some builds open a writer and then encode nothing


def _encode_gif(frames, fps):
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0)
    return buffer.getvalue()


def save_cam_strip(path, frames, cam, n_frames=8, alpha=0.5, title=None):
    """PNG of `n_frames` evenly spaced frames of RGB frames [T, H, W, 3] uint8: the clip on the top row, the
    overlay below."""
    indexes = np.unique(np.linspace(0, len(frames) - 1, min(n_frames, len(frames))).round().astype(int))
    save_figure(cam_strip_figure(frames[indexes], overlay(frames[indexes], cam[indexes], alpha), indexes, title),
                path)
    return path
