"""Decoded-video cache: each video decoded once, stored as a memory-mappable uint8 .npy.

Layout in `cache_dir`, for a source `<stem>.avi` of `size` bytes modified at `mtime_ns`:
- `<stem>.<size>.<mtime_ns>.npy`: frames [F, 112, 112, C], C = 1 or 3;
- `<stem>.<size>.<mtime_ns>.colour.npy` (only when C = 1): uint8 [3, 256] table mapping the stored
  channel to R, G, B (`colour_table` says why).
Any change of the source (size or mtime) changes the key, so a stale entry is never read; stale
entries of the same stem are deleted when the new one is written. To find them, each process lists the
folder once (and adds what it writes), not at every write: filling a cache of N videos stays O(N).

Files are written to a temporary file in `cache_dir` and moved into place with os.replace, so
workers or processes that race on the same video never see a partial file (the last writer wins;
all write the same bytes). The colour table is in place before the frames file appears.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from utils.files.atomic import atomic_open
from utils.files.identity import file_stamp

from .video import decode_video


def cache_key(video_path: str | os.PathLike) -> str:
    """`<stem>.<size>.<mtime_ns>`: changes whenever the source file is rewritten or touched."""
    size, mtime_ns = file_stamp(video_path)
    return f"{Path(video_path).stem}.{size}.{mtime_ns}"


def colour_table(video: np.ndarray) -> np.ndarray | None:
    """[3, 256] uint8 table with video[..., c] == table[c][video[..., 1]], or None if none exists.

    Why a colour table instead of "grey when the 3 channels are identical": an EchoNet video is
    grey, but after MJPG decoding (YUV -> BGR in FFmpeg) the channels of one pixel differ by up to 2
    levels, always in the same way for the same grey level. So per video we check that R and B are
    a function of G; if so only G is stored (3x less disk and I/O) together with that function, and
    clips rebuilt from it are bit-identical to decoding. Identical channels are the special case of
    an identity table. When the check fails (a colour video) all 3 channels are stored.
    """
    green = video[..., 1].reshape(-1)
    table = np.zeros((3, 256), np.uint8)
    table[1] = np.arange(256)
    for c in (0, 2):
        channel = video[..., c].reshape(-1)
        table[c, green] = channel  # one of the values seen for each green level
        if not np.array_equal(table[c][green], channel):
            return None  # some green level maps to two different values: not grey
    if table[:, 0].any():
        # black would be tinted: the datasets' zero padding (stored as level 0) would not come out black
        return None
    return table


def read_cache_entry(path, mmap_mode=None) -> np.ndarray | None:
    """The array stored in a cache file, or None when there is none or it cannot be read (entries are
    written without fsync: one cut short by a power loss is simply computed again)."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # missing, truncated, not an .npy
        return None


def _save_atomic(array: np.ndarray, path: Path) -> None:
    # no fsync: a cache entry lost in a crash is simply decoded again
    with atomic_open(path, "wb", fsync=False) as f:
        np.save(f, array)


class CachedVideo:
    """A cached decoded video, with the same interface as `video.VideoReader`.

    `frames` is a read-only memmap [F, 112, 112, C]; `read(indices)` copies only those frames;
    `colour_lut` is the [3, 256] table when C == 1, else None.
    """

    def __init__(self, frames: np.ndarray, colour_lut: np.ndarray | None):
        self.frames = frames
        self.colour_lut = colour_lut
        self.num_frames = frames.shape[0]

    def read(self, indices) -> np.ndarray:
        return self.frames[np.asarray(indices, dtype=np.int64)]

    def __enter__(self) -> "CachedVideo":
        return self

    def __exit__(self, *exc) -> None:
        pass


_ENTRY = re.compile(r"(?P<stem>.+)\.\d+\.\d+(\.colour)?\.npy")
_entries_by_stem: dict[Path, dict[str, set[str]]] = {}  # per process: cache folder -> stem -> file names


def _entries_of(cache_dir: Path, stem: str) -> set[str]:
    """This stem's entry names: the folder as this process first listed it, plus what it wrote since."""
    if cache_dir not in _entries_by_stem:
        by_stem: dict[str, set[str]] = {}
        for name in os.listdir(cache_dir):
            match = _ENTRY.fullmatch(name)
            if match:
                by_stem.setdefault(match["stem"], set()).add(name)
        _entries_by_stem[cache_dir] = by_stem
    return _entries_by_stem[cache_dir].setdefault(stem, set())


def _remove_stale(cache_dir: Path, stem: str, key: str) -> None:
    """Delete the stem's entries of other keys (an older version of the video); note the new ones."""
    entries = _entries_of(cache_dir, stem)
    for name in sorted(entries):
        if not name.startswith(key + "."):
            try:
                os.remove(cache_dir / name)
            except FileNotFoundError:  # another worker removed it first
                pass
            entries.discard(name)
    entries.update(name for name in (f"{key}.npy", f"{key}.colour.npy") if (cache_dir / name).exists())


def open_cached(video_path: str | os.PathLike, cache_dir: str | os.PathLike) -> CachedVideo:
    """The cached frames of `video_path`, decoding and storing them first if needed."""
    cache_dir = Path(cache_dir)
    key = cache_key(video_path)
    frames_path = cache_dir / f"{key}.npy"
    lut_path = cache_dir / f"{key}.colour.npy"
    frames = read_cache_entry(frames_path, mmap_mode="r")
    if frames is not None:
        if frames.shape[-1] == 3:
            return CachedVideo(frames, None)
        table = read_cache_entry(lut_path)
        if table is not None:
            return CachedVideo(frames, table)
        # (a colour table deleted by hand or cut short: rebuild the entry below)

    video = decode_video(video_path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    table = colour_table(video)
    if table is not None:
        _save_atomic(table, lut_path)
        video = np.ascontiguousarray(video[..., 1:2])
    _save_atomic(video, frames_path)
    _remove_stale(cache_dir, Path(video_path).stem, key)
    return CachedVideo(video, table)
