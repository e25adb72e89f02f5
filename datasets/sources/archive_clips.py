"""Every file of an echo archive -> scored, skipped or failed, for predict.py.

`ArchiveClips` is `VideoFileClips` (all grid clips of a video file) with what an export of an echo lab needs:
- a DICOM object that is not a cine loop (no image, a secondary capture, another modality, one frame, too
  few frames or too short: datasets.sources.study_objects) is `skipped` with its reason, from its header
  alone; any video shorter than `LoopRules.min_frames` frames or `min_seconds` seconds is skipped likewise;
- a loop shorter than one clip is cut by `LoopRules.short_loops` (datasets.short_loops: pad, repeat, fit);
- a DICOM item carries its identity (study/series/SOP instance UIDs, frame time, pixel spacing; never patient
  data) and every item the file's size and modification time, which a resumed run compares.
An item has the keys of a VideoFileClips item (`error`: why the file was not scored, skipped or failed) plus
`status` ('scored', 'skipped' or 'failed'), `skip` (the reason, '' unless skipped), `identity` (dict of
study_objects.IDENTITY_COLUMNS, {} for other files), `frequency` (the sampling period its clips use) and
`file_size`, `file_mtime_ns` (None when the file could not be read). Only `failed` items are real failures:
a corrupt file, a missing decoder.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from utils.script.errors import UserError

from ..clips import clip_grid, cut_clips
from ..short_loops import POLICIES, short_loop_plan
from ..text import one_line
from .any_video import load_echo_video
from .dicom import DICOM_EXTENSIONS, is_dicom_file
from .study_objects import StudyObject, quiet_pydicom, screen_dicom, short_reason
from .video_files import VideoFileClips

SCORED, SKIPPED, FAILED = "scored", "skipped", "failed"


@dataclass(frozen=True)
class LoopRules:
    """Which inputs are loops worth scoring, and how a loop shorter than one clip is cut."""

    short_loops: str = "repeat"  # datasets.short_loops.POLICIES
    min_frames: int = 10  # fewer source frames: skipped
    min_seconds: float = 0.5  # shorter (when the frame rate is known): skipped

    def __post_init__(self):
        if self.short_loops not in POLICIES:
            raise ValueError(f"short_loops must be one of {', '.join(POLICIES)}, got {self.short_loops!r}")


def is_dicom_path(path: str) -> bool:
    return Path(path).suffix.lower() in DICOM_EXTENSIONS or is_dicom_file(path)


class ArchiveClips(VideoFileClips):
    """VideoFileClips(paths, frames, frequency, clip_stride, crop, target_fps, preview) with `rules`."""

    def __init__(self, paths, *args, rules: LoopRules = LoopRules(), **kwargs):
        super().__init__(paths, *args, **kwargs)
        self.rules = rules

    def _item(self, path: str, status: str, error: str = "", trace: str = "", study: StudyObject | None = None,
              stamp=(None, None)) -> dict:
        skip = study.skip if study and status == SKIPPED else ""
        item = self._failed(path, error or skip, trace)
        item.update(status=status, skip=skip, identity=study.identity if study else {},
                    frequency=self.frequency, file_size=stamp[0], file_mtime_ns=stamp[1])
        return item

    def __getitem__(self, index: int) -> dict:
        path, rules = self.paths[index], self.rules
        stamp, study = (None, None), None
        try:
            info = os.stat(path)
            stamp = (info.st_size, info.st_mtime_ns)
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
        study.skip = short_reason(info.n_frames_original, info.source_fps, rules.min_frames, rules.min_seconds)
        if study.skip:
            return self._item(path, SKIPPED, study=study, stamp=stamp)
        frames, frequency, stride, note = short_loop_plan(video, self.frames, self.frequency, self.clip_stride,
                                                          rules.short_loops)
        starts = clip_grid(len(frames), self.frames, frequency, stride)
        shown = np.unique(np.linspace(0, len(video) - 1, self.preview).round().astype(np.int64)) \
            if self.preview > 0 else np.zeros(0, np.int64)
        item = self._item(path, SCORED, study=study, stamp=stamp)
        item.update(image=cut_clips(frames, starts, self.frames, frequency), starts=torch.from_numpy(starts),
                    n_frames=len(video), fps=info.source_fps, fps_used=info.fps, crop=info.crop_text,
                    notes=info.notes + ([note] if note else []), frequency=frequency,
                    preview=torch.from_numpy(video[shown].copy()), preview_indexes=torch.from_numpy(shown))
        return item
