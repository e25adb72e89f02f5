"""Clips, for every dataset of the project: which starts are valid, the grid of starts over a whole video, and
cutting clips out of frames, augmented and normalised.

A clip is the frames `start + frequency * arange(frames)` of a video that is first zero-padded at the end to
`frames * frequency` frames if it is shorter (`padded_length`). The valid starts are 0 .. `num_starts` - 1,
the last one being the padded length - (frames - 1) * frequency.

- `clip_grid`: the starts that score a video by all of it (predict.py, `test_with_three_clips.py --clips all`,
  transfer learning): 0, S, 2S, ... up to the last valid start, plus the last valid start when the stride S
  misses it, so the end of the video is always covered. S defaults to frames * frequency // 2
  (`default_clip_stride`: clips overlap by about half).
- `cut_clips`: the clips at given starts, of decoded frames or of an open video (only the frames the clips
  use are read), each optionally with the augmentation's crop, then normalised.
- `shifted_crop`: the training augmentation (pad by PAD = 6 px, crop 112x112 at one offset for all frames);
  `normalise` / `denormalise`: each channel with MEAN / STD (pixel scale 0..255), and back for pictures.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from utils.script.validators import require_positive_int

from .video import SIZE

MEAN = np.array([0.12741163, 0.1279413, 0.12912785]) * 255
STD = np.array([0.19557191, 0.19562256, 0.1965878]) * 255
PAD = 6  # augmentation: 112 -> 124 -> random 112 crop
# Normalised value of every uint8 level per channel, [3, 256] float32: normalising a clip is one
# table lookup per value (computed in float64, rounded to float32 once).
NORMALISED = ((np.arange(256)[None, :] - MEAN[:, None]) / STD[:, None]).astype(np.float32)


def padded_length(num_frames: int, frames: int, frequency: int) -> int:
    """Length of a video after the zero-padding that makes room for one clip."""
    return max(num_frames, frames * frequency)


def num_starts(num_frames: int, frames: int, frequency: int) -> int:
    """Valid starts are 0 .. num_starts - 1."""
    return padded_length(num_frames, frames, frequency) - (frames - 1) * frequency


def default_clip_stride(frames: int, frequency: int) -> int:
    """Half a clip's length in frames (frames * frequency // 2), at least 1."""
    return max(1, require_positive_int("frames", frames) * require_positive_int("frequency", frequency) // 2)


def clip_grid(num_frames: int, frames: int, frequency: int, stride: int | None = None) -> np.ndarray:
    """Starts 0, S, 2S, ... <= the last valid start, plus the last valid start if the grid misses it
    (int64 array). A video shorter than frames * frequency counts as zero-padded to that length."""
    num_frames = require_positive_int("num_frames", num_frames)
    stride = default_clip_stride(frames, frequency) if stride is None else require_positive_int("stride", stride)
    last = num_starts(num_frames, require_positive_int("frames", frames), require_positive_int("frequency", frequency)) - 1
    starts = np.arange(0, last + 1, stride, dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, np.int64(last))
    return starts


def shifted_crop(clip: np.ndarray, top: int, left: int) -> np.ndarray:
    """The augmentation's crop of [..., H, W] uint8 frames: zero-pad PAD pixels on every side and take the
    SIZE x SIZE window at (top, left) of the padded frames (torchvision's RandomCrop(SIZE, padding=PAD) with
    that offset; numpy here, as importing torchvision.transforms costs ~2 s per process)."""
    height, width = clip.shape[-2:]
    out = np.zeros((*clip.shape[:-2], SIZE, SIZE), clip.dtype)
    # the window in source coordinates, clipped to the frame; the rest stays padding
    y0, x0 = top - PAD, left - PAD
    src_y, src_x = slice(max(y0, 0), min(y0 + SIZE, height)), slice(max(x0, 0), min(x0 + SIZE, width))
    out[..., src_y.start - y0:src_y.stop - y0, src_x.start - x0:src_x.stop - x0] = clip[..., src_y, src_x]
    return out


def normalise(clip: np.ndarray, colour_lut: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 [C, T, H, W] -> float32 [3, T, H, W] normalised with MEAN / STD (written into `out` if given,
    a C-contiguous float32 array of that shape).

    C is 3 (RGB), or 1 with `colour_lut` ([3, 256] uint8) giving R, G, B of each stored value.
    """
    table = NORMALISED if colour_lut is None else np.take_along_axis(NORMALISED, colour_lut.astype(np.intp), axis=1)
    planes = np.ascontiguousarray(clip).reshape(clip.shape[0], -1, clip.shape[-1])  # [C, T * H, W]
    out = np.empty((3, *clip.shape[1:]), np.float32) if out is None else out
    for c in range(3):  # cv2.LUT: one table lookup per value, ~2x faster than numpy indexing
        cv2.LUT(planes[c if len(planes) == 3 else 0], table[c], dst=out[c].reshape(planes.shape[1:]))
    return out


def denormalise(clip) -> np.ndarray:
    """Normalised clip [3, T, H, W] (as the datasets produce it) -> RGB frames [T, H, W, 3] uint8."""
    clip = clip.detach().cpu().numpy() if torch.is_tensor(clip) else np.asarray(clip)
    pixels = clip * STD[:, None, None, None] + MEAN[:, None, None, None]
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 3, 0)


def cut_clips(video, starts, frames: int, frequency: int, offsets=None) -> torch.Tensor:
    """The clips at `starts`, float32 [len(starts), 3, frames, H, W] (H = W = SIZE with `offsets`).

    `video`: uint8 RGB frames [F, H, W, 3], or an open video with `num_frames`, `read(indexes)` and
    `colour_lut` (datasets.video.VideoReader, datasets.cache.CachedVideo), read once for all the clips and
    only at the frames they use. Indexes past the end read a black frame (the zero-padding).
    `offsets`: None, or one (top, left) per start, that clip's augmentation crop (`shifted_crop`).
    """
    if isinstance(video, np.ndarray):
        num_frames, read, colour_lut = len(video), video.__getitem__, None
    else:
        num_frames, read, colour_lut = video.num_frames, video.read, video.colour_lut
    index = np.asarray(starts, dtype=np.int64).reshape(-1, 1) + frequency * np.arange(frames)  # [clips, frames]
    real = index < num_frames  # the rest is temporal zero-padding
    wanted = np.unique(index[real])
    decoded = read(wanted)  # [len(wanted), H, W, C] uint8
    decoded = np.concatenate([decoded, np.zeros((1, *decoded.shape[1:]), np.uint8)])  # + the black frame
    rows = np.where(real, np.searchsorted(wanted, index), len(wanted))
    height, width = (SIZE, SIZE) if offsets is not None else decoded.shape[1:3]
    clips = torch.empty((len(rows), 3, frames, height, width), dtype=torch.float32)
    for k, clip_rows in enumerate(rows):
        clip = decoded[clip_rows].transpose(3, 0, 1, 2)  # [C, T, H, W]
        if offsets is not None:
            clip = shifted_crop(clip, *offsets[k])
        normalise(clip, colour_lut, out=clips[k].numpy())
    return clips
