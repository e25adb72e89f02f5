"""The EchoNet-Dynamic dataset of CoReEcho: one class, `EchoNet(root, split, frames, frequency, ...)`, whose
`starts` policy says where its clips begin:
- 'random' (training): `views` clips per item (2 for RnC's stage 1), each at a start uniform in
  [0, num_starts) with, when `aug`, its own crop offset uniform in [0, 2 * PAD]^2;
- 'fixed' (validation, test): the same starts every epoch, from `path_test_start_indexes` (pickle / JSON / CSV,
  see start_indexes.py) or drawn once with numpy.random.default_rng(seed), `n_clips` per video;
- 'grid' (`test_with_three_clips.py --clips all`): every video's datasets.clips.clip_grid.
The released names are presets of it: `EchoNetRNC`, `EchoNetFixedClips`, `EchoNetTest` (released keywords
`path_test_start_indexes=` and `trial=` kept) and `EchoNetAllClips`.

Lists: filelist.py. Clips: datasets.clips.cut_clips (zero-padding of short videos, the crop, MEAN / STD).
Randomness: epoch_seed.py (with an int seed every item draws from (seed, epoch, index)).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from utils.script.errors import BadInputError, first_few
from utils.script.validators import require_positive_int

from .cache import open_cached
from .clips import PAD, clip_grid, cut_clips, default_clip_stride, num_starts
from .epoch_seed import SeededEpochs
from .filelist import SPLITS, load_split
from .start_indexes import load_start_indexes
from .video import VideoReader

STARTS = ("random", "fixed", "grid")


class EchoNet(SeededEpochs, torch.utils.data.Dataset):
    """EchoNet items: dict(name, image, label [1], ef [1]). 'random': image [3, frames, 112, 112] (a tuple of
    `views` such dicts when views > 1); 'fixed' and 'grid': image [n_clips, 3, frames, 112, 112] and `starts`
    [n_clips] (with `trial=k`, the single clip at each video's k-th fixed start, image [3, frames, 112, 112]).

    Attributes: `vnames` (names with .avi, FileList order), `labels` (float32 EF), `num_frames` (from the
    headers), `filelist` (the kept FileList rows); 'fixed' and 'grid': `start_indexes` (name -> int64 array),
    `n_clips` (None for 'grid', whose counts are `clip_counts`), 'grid': `clip_stride`.
    """

    def __init__(self, root, split: str = "train", frames: int = 16, frequency: int = 2, aug: bool = False,
                 seed: int | None = None, cache_dir=None, max_frames: int = 250, *, starts: str = "random",
                 views: int = 1, n_clips: int = 1, path_test_start_indexes=None, trial: int | None = None,
                 clip_stride: int | None = None):
        if not isinstance(split, str) or split.lower() not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)} (any case), got {split!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be None or a non-negative int, got {seed!r}")
        if starts not in STARTS:
            raise ValueError(f"starts must be one of {', '.join(STARTS)}, got {starts!r}")
        if starts != "random" and (aug or views != 1):
            raise ValueError(f"aug and views are for random starts, not {starts!r} ones")
        self.root = Path(root)
        self.split = split.lower()
        # as in the released code, max_frames caps the clip length
        self.frames = min(require_positive_int("frames", frames), require_positive_int("max_frames", max_frames))
        self.frequency = require_positive_int("frequency", frequency)
        self.aug = bool(aug)
        self.starts = starts
        self.views = require_positive_int("views", views)
        self.seed = None if seed is None else int(seed)
        self._share_epoch()
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.filelist = load_split(self.root, self.split, cache_dir)
        self.vnames: list[str] = list(self.filelist["FileName"])
        self.labels: np.ndarray = self.filelist["EF"].to_numpy(np.float32)
        self.num_frames: np.ndarray = self.filelist["frames"].to_numpy(np.int64)
        self.start_indexes = self.n_clips = self.trial = None
        if starts == "fixed":
            self.start_indexes = (self._drawn_starts(require_positive_int("n_clips", n_clips))
                                  if path_test_start_indexes is None else self._read_starts(path_test_start_indexes))
            self.n_clips = len(self.start_indexes[self.vnames[0]])
            if trial is not None and not 0 <= trial < self.n_clips:
                raise ValueError(f"trial must lie in [0, {self.n_clips}) (one per start), got {trial!r}")
            self.trial = trial
        elif starts == "grid":
            self.clip_stride = default_clip_stride(self.frames, self.frequency) if clip_stride is None else \
                require_positive_int("clip_stride", clip_stride)
            self.start_indexes = {name: clip_grid(int(count), self.frames, self.frequency, self.clip_stride)
                                  for name, count in zip(self.vnames, self.num_frames)}
            self.clip_counts = np.array([len(self.start_indexes[name]) for name in self.vnames], dtype=np.int64)

    def _num_starts(self, num_frames: int) -> int:
        return num_starts(int(num_frames), self.frames, self.frequency)

    def _drawn_starts(self, n_clips: int) -> dict[str, np.ndarray]:
        """`n_clips` starts per video, uniform in its valid range, drawn once from `seed` in FileList order."""
        rng = np.random.default_rng(self.seed)
        highs = [self._num_starts(count) for count in self.num_frames]
        return {name: rng.integers(0, high, size=n_clips).astype(np.int64) for name, high in zip(self.vnames, highs)}

    def _read_starts(self, path) -> dict[str, np.ndarray]:
        """The starts of a start-index file, every video of the split present and every start valid."""
        path = os.fspath(path)
        starts = load_start_indexes(path)
        missing = [name for name in self.vnames if name not in starts]
        if missing:
            raise BadInputError(f"{path} has no start indexes for {len(missing)} video(s) of split "
                                f"'{self.split}': {first_few(missing)}")
        for name, count in zip(self.vnames, self.num_frames.tolist()):
            high = self._num_starts(count)
            for start in starts[name]:
                if not 0 <= start < high:
                    raise BadInputError(f"{path}: start {start} of {name} is out of range [0, {high}) "
                                        f"({count} frames, frames={self.frames}, frequency={self.frequency})")
        return {name: starts[name] for name in self.vnames}

    def __len__(self) -> int:
        return len(self.vnames)

    def video_path(self, index: int) -> Path:
        return self.root / "Videos" / self.vnames[index]

    def _open(self, index: int):
        """The video's frames: a VideoReader, or the decoded-video cache."""
        if self.cache_dir is not None:
            return open_cached(self.video_path(index), self.cache_dir)
        return VideoReader(self.video_path(index))

    def _crop_offset(self, generator: torch.Generator | None) -> tuple[int, int] | None:
        if not self.aug:
            return None
        top, left = torch.randint(2 * PAD + 1, (2,), generator=generator).tolist()
        return top, left

    def _item(self, index: int, image: torch.Tensor) -> dict:
        label = torch.tensor([self.labels[index]], dtype=torch.float32)
        return {"name": self.vnames[index], "image": image, "label": label, "ef": label.clone()}

    def __getitem__(self, index: int):
        index = range(len(self))[index]
        if self.starts == "random":
            return self._random_views(index)
        starts = self.start_indexes[self.vnames[index]]
        if self.trial is not None:
            starts = starts[self.trial:self.trial + 1]
        with self._open(index) as video:
            clips = cut_clips(video, starts, self.frames, self.frequency)
        item = self._item(index, clips[0] if self.trial is not None else clips)
        item["starts"] = torch.from_numpy(starts.copy())
        return item

    def _random_views(self, index: int):
        """`views` clips cut from one read, each drawing its start and then its crop offset."""
        generator = self.item_generator(index)
        with self._open(index) as video:
            starts, offsets = [], []
            for _ in range(self.views):
                starts.append(int(torch.randint(self._num_starts(video.num_frames), (1,), generator=generator)))
                offsets.append(self._crop_offset(generator))
            clips = cut_clips(video, starts, self.frames, self.frequency, offsets if self.aug else None)
        items = tuple(self._item(index, clip) for clip in clips)
        return items[0] if self.views == 1 else items


def EchoNetRNC(root, split: str = "train", frames: int = 16, frequency: int = 2, aug: bool = False,
               seed: int | None = None, cache_dir=None, max_frames: int = 250) -> EchoNet:
    """Stage 1's items: two independent views (own start and crop each) of one video, from a single read."""
    return EchoNet(root, split, frames, frequency, aug, seed, cache_dir, max_frames, views=2)


def EchoNetFixedClips(root, split: str = "val", frames: int = 16, frequency: int = 2, n_clips: int = 1,
                      seed: int = 0, path_test_start_indexes=None, cache_dir=None, max_frames: int = 250) -> EchoNet:
    """Validation and testing: `n_clips` clips per video at fixed starts (the file's count when a file is given)."""
    return EchoNet(root, split, frames, frequency, seed=seed, cache_dir=cache_dir, max_frames=max_frames,
                   starts="fixed", n_clips=n_clips, path_test_start_indexes=path_test_start_indexes)


def EchoNetTest(root, split: str = "test", frames: int = 16, frequency: int = 2, path_test_start_indexes=None,
                trial: int | None = None, n_clips: int = 3, seed: int = 0, cache_dir=None,
                max_frames: int = 250) -> EchoNet:
    """The test split at fixed starts (the released `test_start_indexes.pkl`, or drawn with `seed`); `trial=k`
    gives the single clip at each video's k-th start, as the released class does."""
    return EchoNet(root, split, frames, frequency, seed=seed, cache_dir=cache_dir, max_frames=max_frames,
                   starts="fixed", n_clips=n_clips, path_test_start_indexes=path_test_start_indexes, trial=trial)


def EchoNetAllClips(root, split: str = "test", frames: int = 16, frequency: int = 2, clip_stride: int | None = None,
                    cache_dir=None, max_frames: int = 250) -> EchoNet:
    """Every video's grid of starts over all of it, n_clips varying per video (`clip_counts`)."""
    return EchoNet(root, split, frames, frequency, cache_dir=cache_dir, max_frames=max_frames, starts="grid",
                   clip_stride=clip_stride)
