"""Clips over a whole video on a regular grid of starts, for scoring a video by all of it.

The grid (shared by predict.py and `test_with_three_clips.py --clips all`): a clip is the frames
`start + frequency * arange(frames)`, as everywhere in the project; the valid starts are
0 .. L - 1 with L = datasets.echonet.num_starts (the last one is `len - span`, span =
(frames - 1) * frequency + 1, after the zero-padding of a video shorter than frames * frequency).
The grid takes 0, S, 2S, ... up to the last valid start and adds the last valid start when the
stride S misses it, so the end of the video is always covered. S defaults to frames * frequency // 2
(clips overlap by about half).

- `clip_grid` the starts; `cut_clips` the normalised clips of decoded frames at given starts,
  zero-padded and normalised exactly as the EchoNet datasets cut theirs.
- `VideoFileClips`: any video files (datasets.sources.any_video.load_echo_video) -> all grid clips per
  file; a file that cannot be read gives an item with its one-line error instead of clips.
- `EchoNetAllClips`: the EchoNet split with every video's grid starts (a variable number of clips
  per video; utils.evaluation.inference takes one video per item).
"""
from __future__ import annotations

import os
import traceback

import numpy as np
import torch

from utils.script.errors import UserError

from .sources.any_video import DEFAULT_FPS, load_echo_video, parse_crop
from .echonet import EchoNetFixedClips, normalise, num_starts, padded_length
from .video import SIZE


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def default_clip_stride(frames: int, frequency: int) -> int:
    """Half a clip's length in frames (frames * frequency // 2), at least 1."""
    return max(1, _positive("frames", frames) * _positive("frequency", frequency) // 2)


def clip_grid(num_frames: int, frames: int, frequency: int, stride: int | None = None) -> np.ndarray:
    """Starts 0, S, 2S, ... <= the last valid start, plus the last valid start if the grid misses it
    (int64 array). A video shorter than frames * frequency counts as zero-padded to that length."""
    num_frames = _positive("num_frames", num_frames)
    stride = default_clip_stride(frames, frequency) if stride is None else _positive("stride", stride)
    last = num_starts(num_frames, _positive("frames", frames), _positive("frequency", frequency)) - 1
    starts = np.arange(0, last + 1, stride, dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, np.int64(last))
    return starts


def cut_clips(video: np.ndarray, starts, frames: int, frequency: int) -> torch.Tensor:
    """uint8 RGB frames [F, H, W, 3] -> float32 clips [len(starts), 3, frames, H, W]: frame indexes
    start + frequency * k, indexes past the end read a black frame (the datasets' zero-padding), each
    clip normalised by datasets.echonet.normalise on its uint8 [3, T, H, W]."""
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    index = starts[:, None] + frequency * np.arange(frames)  # [clips, frames]
    padded = np.concatenate([video, np.zeros((1, *video.shape[1:]), np.uint8)])  # + one black frame
    index = np.where(index < len(video), index, len(video))
    clips = torch.empty((len(starts), 3, frames, *video.shape[1:3]), dtype=torch.float32)
    for k, rows in enumerate(index):
        clips[k] = torch.from_numpy(normalise(padded[rows].transpose(3, 0, 1, 2)))
    return clips


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class VideoFileClips(torch.utils.data.Dataset):
    """All grid clips of each video file, for predict.py. An item is a dict:

    path, image float32 [n_clips, 3, frames, 112, 112], starts int64 [n_clips], n_frames (after
    resampling; the clips index these), fps (found in the file; None if none), fps_used (of the
    frames the clips come from), crop ('x,y,w,h', '' when a 112x112 video was taken as it is),
    notes [str], error ('' or the one-line reason the file was not scored; then no clips),
    traceback (for errors that are not the project's user errors), and with `preview` > 0 that many
    evenly spaced frames uint8 [k, 112, 112, 3] and their indexes (`preview_indexes`).

    Items do not depend on the order, the worker or the number of workers: nothing is random.
    """

    def __init__(self, paths, frames: int, frequency: int, clip_stride: int | None = None, crop="auto",
                 target_fps: float = DEFAULT_FPS, preview: int = 0):
        self.paths = [os.fspath(p) for p in paths]
        self.frames = _positive("frames", frames)
        self.frequency = _positive("frequency", frequency)
        self.clip_stride = default_clip_stride(frames, frequency) if clip_stride is None else \
            _positive("clip_stride", clip_stride)
        self.crop = parse_crop(crop)
        self.target_fps = target_fps
        self.preview = int(preview)

    def __len__(self) -> int:
        return len(self.paths)

    def _failed(self, path: str, error: str, trace: str = "") -> dict:
        return {"path": path, "image": torch.zeros((0, 3, self.frames, SIZE, SIZE)),
                "starts": torch.zeros(0, dtype=torch.int64), "n_frames": 0, "fps": None, "fps_used": None,
                "crop": "", "notes": [], "error": error, "traceback": trace,
                "preview": torch.zeros((0, SIZE, SIZE, 3), dtype=torch.uint8),
                "preview_indexes": torch.zeros(0, dtype=torch.int64)}

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        try:
            video, info = load_echo_video(path, self.crop, self.target_fps)
            starts = clip_grid(len(video), self.frames, self.frequency, self.clip_stride)
            clips = cut_clips(video, starts, self.frames, self.frequency)
        except UserError as e:  # unreadable, not a video, one frame, ...: the message names the file
            return self._failed(path, _one_line(e))
        except Exception as e:  # an unexpected failure on one file must not stop a batch: keep its traceback
            return self._failed(path, f"{type(e).__name__}: {_one_line(e)}", traceback.format_exc())
        notes = list(info.notes)
        if len(video) < self.frames * self.frequency:
            notes.append(f"shorter than one clip ({len(video)} < {self.frames} x {self.frequency} frames): "
                         f"zero-padded at the end to {padded_length(len(video), self.frames, self.frequency)} "
                         "frames, as in training")
        shown = np.unique(np.linspace(0, len(video) - 1, self.preview).round().astype(np.int64)) \
            if self.preview > 0 else np.zeros(0, np.int64)
        return {"path": path, "image": clips, "starts": torch.from_numpy(starts), "n_frames": len(video),
                "fps": info.source_fps, "fps_used": info.fps, "crop": info.crop_text, "notes": notes, "error": "",
                "traceback": "", "preview": torch.from_numpy(video[shown].copy()),
                "preview_indexes": torch.from_numpy(shown)}


def keep_item(item):
    """DataLoader collate for batch_size=None: the item unchanged (no conversion of its fields)."""
    return item


class EchoNetAllClips(EchoNetFixedClips):
    """An EchoNet split with every video's grid starts (see `clip_grid`): dict(name, image
    [n_clips, 3, frames, 112, 112], starts [n_clips], label, ef), n_clips varying per video
    (`self.clip_counts`; `self.n_clips` is None)."""

    def __init__(self, root, split: str = "test", frames: int = 16, frequency: int = 2,
                 clip_stride: int | None = None, cache_dir=None, max_frames: int = 250):
        super().__init__(root, split, frames, frequency, n_clips=1, seed=0, cache_dir=cache_dir,
                         max_frames=max_frames)
        self.clip_stride = default_clip_stride(self.frames, self.frequency) if clip_stride is None else \
            _positive("clip_stride", clip_stride)
        # the drawn start of the parent class is replaced by the grid
        self.start_indexes = {name: clip_grid(int(count), self.frames, self.frequency, self.clip_stride)
                              for name, count in zip(self.vnames, self.num_frames)}
        self.clip_counts = np.array([len(self.start_indexes[name]) for name in self.vnames], dtype=np.int64)
        self.n_clips = None
