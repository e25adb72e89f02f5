"""Every file of an echo archive -> its grid clips, or why it was skipped or failed, for predict.py and app.py.

`ArchiveClips` reads each file with datasets.sources.any_video.load_echo_video and cuts every clip of
datasets.clips.clip_grid, with what an export of an echo lab needs:
- a DICOM object that is not a greyscale 2D cine loop (no image, a secondary capture, another modality or
  anatomy, Doppler / M-mode, one frame, too few frames or too short: scoring.study_objects, scoring.loop_kind)
  is `skipped` with its reason, from its header alone; any video under `ShortLoopSettings.min_frames` frames
  or `min_seconds` seconds, or with colour flow in its crop (datasets.sources.colour_flow), likewise;
- a loop shorter than one clip is cut by `ShortLoopSettings.short_loops` (scoring.short_loops);
- a DICOM item carries its identity (UIDs, frame time, pixel spacing; never patient data) and every item the
  file's size and modification time, which a resumed run compares.
Only `failed` items are real failures: a corrupt file, a missing decoder. The keys of an item are listed in
ArchiveClips' docstring.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datasets.clips import clip_grid, cut_clips, default_clip_stride
from datasets.sources.any_video import DEFAULT_FPS, load_echo_video, parse_crop
from datasets.sources.colour_flow import colour_flow_reason
from datasets.sources.dicom import DICOM_EXTENSIONS, is_dicom_file
from datasets.video import SIZE
from utils.files.identity import file_stamp
from utils.script.errors import UserError, one_line
from utils.script.validators import require_positive_int

from .short_loops import POLICIES, short_loop_plan
from .study_objects import StudyObject, quiet_pydicom, screen_dicom, short_reason

SCORED, SKIPPED, FAILED = "scored", "skipped", "failed"


@dataclass(frozen=True)
class ShortLoopSettings:
    """Which inputs are loops long enough to score, and how a loop shorter than one clip is cut."""

    short_loops: str = "repeat"  # scoring.short_loops.POLICIES
    min_frames: int = 10  # fewer source frames: skipped
    min_seconds: float = 0.5  # shorter (when the frame rate is known): skipped

    def __post_init__(self):
        if self.short_loops not in POLICIES:
            raise ValueError(f"short_loops must be one of {', '.join(POLICIES)}, got {self.short_loops!r}")


def is_dicom_path(path: str) -> bool:
    return Path(path).suffix.lower() in DICOM_EXTENSIONS or is_dicom_file(path)


class ArchiveClips(torch.utils.data.Dataset):
    """All grid clips of each file, or why it has none. An item is a dict:

    path, image float32 [n_clips, 3, frames, 112, 112], starts int64 [n_clips], n_frames (after resampling;
    the clips index these), fps (found in the file; None if none), fps_used (of the frames the clips come
    from), crop ('x,y,w,h', '' when a 112x112 video was taken as it is), crop_source ('region', 'auto',
    'none', 'given'; '' without clips), notes [str], error ('' or the
    one-line reason the file was not scored; then no clips), traceback (for errors that are not the project's
    user errors), `preview` evenly spaced frames uint8 [k, 112, 112, 3] and their `preview_indexes` (k =
    `preview`, none by default), status ('scored', 'skipped' or 'failed'), skip (the reason, '' unless
    skipped), identity (study_objects.IDENTITY_COLUMNS, {} for other files), frequency (the sampling period
    its clips use), file_size and file_mtime_ns (None when the file could not be read).

    Items do not depend on the order, the worker or the number of workers: nothing is random.
    """

    def __init__(self, paths, frames: int, frequency: int, clip_stride: int | None = None, crop="auto",
                 target_fps: float = DEFAULT_FPS, preview: int = 0, rules: ShortLoopSettings = ShortLoopSettings()):
        self.paths = [os.fspath(p) for p in paths]
        self.frames = require_positive_int("frames", frames)
        self.frequency = require_positive_int("frequency", frequency)
        self.clip_stride = default_clip_stride(frames, frequency) if clip_stride is None else \
            require_positive_int("clip_stride", clip_stride)
        self.crop = parse_crop(crop)
        self.target_fps = target_fps
        self.preview = int(preview)
        self.rules = rules

    def __len__(self) -> int:
        return len(self.paths)

    def _item(self, path: str, status: str, error: str = "", trace: str = "", study: StudyObject | None = None,
              stamp=(None, None)) -> dict:
        """The item of a file without clips (skipped, failed, or scored before its clips are added)."""
        skip = study.skip if study and status == SKIPPED else ""
        return {"path": path, "image": torch.zeros((0, 3, self.frames, SIZE, SIZE)),
                "starts": torch.zeros(0, dtype=torch.int64), "n_frames": 0, "fps": None, "fps_used": None,
                "crop": "", "crop_source": "", "notes": [], "error": error or skip, "traceback": trace,
                "preview": torch.zeros((0, SIZE, SIZE, 3), dtype=torch.uint8),
                "preview_indexes": torch.zeros(0, dtype=torch.int64), "status": status, "skip": skip,
                "identity": study.identity if study else {}, "frequency": self.frequency, "file_size": stamp[0],
                "file_mtime_ns": stamp[1]}

    def __getitem__(self, index: int) -> dict:
        path, rules = self.paths[index], self.rules
        stamp, study = (None, None), None
        try:
            stamp = file_stamp(path)
            with quiet_pydicom():  # pydicom's warnings may quote a patient's name
                study = screen_dicom(path, rules.min_frames, rules.min_seconds) if is_dicom_path(path) \
                    else StudyObject()
                return self._read(path, study, stamp)
        except UserError as e:  # unreadable, missing decoder, ...: the message names the file
            return self._item(path, FAILED, one_line(e), study=study, stamp=stamp)
        except OSError as e:  # gone or unreadable since the listing
            return self._item(path, FAILED, f"{path}: cannot be read ({e.strerror or one_line(e)})", study=study,
                              stamp=stamp)
        except Exception as e:  # an unexpected failure on one file must not stop the run: keep its traceback
            return self._item(path, FAILED, f"{type(e).__name__}: {one_line(e)}", traceback.format_exc(), study,
                              stamp)

    def _read(self, path: str, study: StudyObject, stamp) -> dict:
        rules = self.rules
        if study.skip:
            return self._item(path, SKIPPED, study=study, stamp=stamp)
        video, info = load_echo_video(path, self.crop, self.target_fps)
        study.skip = short_reason(info.n_frames_original, info.source_fps, rules.min_frames, rules.min_seconds) \
            or colour_flow_reason(info.colour_fraction)
        if study.skip:
            item = self._item(path, SKIPPED, study=study, stamp=stamp)
            item["crop_source"] = info.crop_source  # where the colour was measured
            return item
        frames, frequency, stride, note = short_loop_plan(video, self.frames, self.frequency, self.clip_stride,
                                                          rules.short_loops)
        starts = clip_grid(len(frames), self.frames, frequency, stride)
        # `preview` evenly spaced frames of the video as read (not as looped or padded)
        shown = np.unique(np.linspace(0, len(video) - 1, self.preview).round().astype(np.int64)) \
            if self.preview > 0 else np.zeros(0, np.int64)
        item = self._item(path, SCORED, study=study, stamp=stamp)
        item.update(image=cut_clips(frames, starts, self.frames, frequency), starts=torch.from_numpy(starts),
                    n_frames=len(video), fps=info.source_fps, fps_used=info.fps, crop=info.crop_text,
                    crop_source=info.crop_source, notes=study.notes + info.notes + ([note] if note else []),
                    frequency=frequency,
                    preview=torch.from_numpy(video[shown].copy()), preview_indexes=torch.from_numpy(shown))
        return item
