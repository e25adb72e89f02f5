"""Decoding of EchoNet AVI files with OpenCV.

A clip decodes only the frames it uses (`VideoReader.read` says how, and why not by seeking). Frames stay uint8
RGB ([n, 112, 112, 3]); callers convert only the final small clip to float.

Errors are one line and name the file:
- missing file -> FileNotFoundError; a file OpenCV cannot open -> ValueError;
- a header with zero frames -> ValueError;
- a wanted frame that cannot be read (a truncated file: see `VideoReader.read`) -> ValueError naming the
  frame index;
- frames of another size than 112x112 are resized to 112x112 with cv2.INTER_AREA, with a
  warnings.warn naming the file (once per opened file).
"""
from __future__ import annotations

import os
import warnings

import cv2
import numpy as np

from utils.script.errors import BadInputError, MissingInputError

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".gif")  # the video files every reader of the project lists
SIZE = 112  # EchoNet-Dynamic frames are 112x112


class VideoReader:
    """One open video. `num_frames` is the header's count; `read(indices)` returns those frames.

    Use as a context manager; `read` may be called once per reader (the file is walked forward).
    `colour_lut` is None: frames come out as full RGB (a cached video may instead carry a LUT).
    """

    colour_lut = None

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise MissingInputError(f"video file {self.path} does not exist")
        self._cap = cv2.VideoCapture(self.path)
        if not self._cap.isOpened():
            raise BadInputError(f"video file {self.path} cannot be opened (corrupt or not a video)")
        self.num_frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if self.num_frames <= 0:
            self.close()
            raise BadInputError(f"video file {self.path} has no frames")
        self._warned = False
        self._used = False

    def _warn_resize(self, width: int, height: int) -> None:
        if not self._warned:
            warnings.warn(f"{self.path}: frames are {width}x{height}, resized to {SIZE}x{SIZE} with cv2.INTER_AREA")
            self._warned = True

    def read(self, indices) -> np.ndarray:
        """Frames at `indices` (any order, repeats allowed) as uint8 RGB [len(indices), 112, 112, 3].

        Every frame of an MJPG video is a JPEG of its own, so a clip needs only the frames it uses:
        `read` walks the file once, `grab()`s (demux + decode, no colour conversion) the
        frames it skips and `retrieve()`s (conversion to BGR) only the wanted ones. Seeking with
        CAP_PROP_POS_FRAMES was measured slower (OpenCV's FFmpeg backend seeks ~16 frames back and
        decodes forward on every seek): 32 ms against 14 ms for a 36-frame clip at period 4.

        The frame count comes from the file header; if the file is truncated (the header promises more
        frames than there are) reading a wanted frame fails and raises. Frames after the last wanted one
        are not read, so a clip that ends before the truncation point is still returned; a full decode
        (`decode_video`, used by the cache) always detects truncation. Frames beyond the header count
        are ignored.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self._used:
            raise RuntimeError(f"VideoReader({self.path}).read may be called only once")
        self._used = True
        if indices.size == 0:
            return np.zeros((0, SIZE, SIZE, 3), np.uint8)
        if indices.min() < 0 or indices.max() >= self.num_frames:
            raise IndexError(f"{self.path}: frame indices must lie in [0, {self.num_frames}), "
                             f"got {indices.min()}..{indices.max()}")
        wanted, where = np.unique(indices, return_inverse=True)
        frames = np.empty((len(wanted), SIZE, SIZE, 3), np.uint8)
        k = 0  # position in `wanted`
        for i in range(int(wanted[-1]) + 1):
            if not self._cap.grab():
                raise BadInputError(f"{self.path}: frame {i} cannot be read (header says {self.num_frames} frames; "
                                 "truncated or corrupt video)")
            if i != wanted[k]:
                continue
            ok, bgr = self._cap.retrieve()
            if not ok:
                raise BadInputError(f"{self.path}: frame {i} cannot be decoded (corrupt video)")
            if bgr.shape[:2] != (SIZE, SIZE):
                self._warn_resize(bgr.shape[1], bgr.shape[0])
                bgr = cv2.resize(bgr, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=frames[k])
            k += 1
        if len(wanted) == len(indices) and (wanted == indices).all():
            return frames  # already in the asked order: skip the copy
        return frames[where]

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def frame_count(path: str | os.PathLike) -> int:
    """Number of frames from the file header (cheap: nothing is decoded)."""
    with VideoReader(path) as reader:
        return reader.num_frames


def decode_video(path: str | os.PathLike) -> np.ndarray:
    """All frames of a video as uint8 RGB [F, 112, 112, 3]."""
    with VideoReader(path) as reader:
        return reader.read(np.arange(reader.num_frames))
