"""All grid clips of any echo video files, for predict.py: `VideoFileClips` reads each file with
datasets.sources.any_video.load_echo_video and cuts every clip of datasets.clips.clip_grid; a file that
cannot be read gives an item with its one-line error instead of clips. `keep_item` is the DataLoader
collate that passes such an item through unchanged."""
from __future__ import annotations

import os
import traceback

import numpy as np
import torch

from utils.script.errors import UserError
from utils.script.validators import require_positive_int

from ..clips import clip_grid, cut_clips, default_clip_stride, padded_length
from ..text import one_line
from ..video import SIZE
from .any_video import DEFAULT_FPS, load_echo_video, parse_crop


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
        self.frames = require_positive_int("frames", frames)
        self.frequency = require_positive_int("frequency", frequency)
        self.clip_stride = default_clip_stride(frames, frequency) if clip_stride is None else \
            require_positive_int("clip_stride", clip_stride)
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
            return self._failed(path, one_line(e))
        except Exception as e:  # an unexpected failure on one file must not stop a batch: keep its traceback
            return self._failed(path, f"{type(e).__name__}: {one_line(e)}", traceback.format_exc())
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
