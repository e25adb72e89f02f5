"""EchoNet-Dynamic datasets for CoReEcho. All take (root, split, frames, frequency, ...):
`EchoNet` (one random clip per video), `EchoNetRNC` (two views per video, stage 1), `EchoNetFixedClips`
(validation: clips at fixed starts), `EchoNetTest` (the test split at the released start indexes; the
released keywords `path_test_start_indexes=` and `trial=` keep working) and `EchoNetAllClips` (every
video's grid of starts over all of it, `test_with_three_clips.py --clips all`).

Data folder layout (EchoNet-Dynamic): `FileList.csv` (FileName, EF, Split required; FileName with
or without .avi; Split in any case), `VolumeTracings.csv` (header FileName,X1,Y1,X2,Y2,Frame),
`Videos/<FileName>.avi`. As in the released loader only videos with >= 2 distinct traced frames
are kept (silently); tracings of videos that FileList.csv does not list are ignored with a warning.
A listed video that is missing or cannot be opened is an error, found by a cached header pass before
any clip is read (headers.py).

Clips are cut by datasets.clips.cut_clips (zero-padding of short videos, the augmentation's crop,
normalisation with MEAN / STD). Training starts are uniform in [0, num_starts) and the augmentation's
crop offset uniform in [0, 2 * PAD]^2, one per clip.

Randomness: with `seed=None` torch's global RNG is used (DataLoader seeds each worker); with an
int seed every item draws from its own torch.Generator seeded from (seed, epoch, index), so an
item does not depend on workers, order or process (resumable and DDP-reproducible).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from utils.script.errors import BadInputError, MissingInputError
from utils.script.validators import require_positive_int

from .cache import open_cached
from .clips import PAD, clip_grid, cut_clips, default_clip_stride, num_starts
from .headers import frame_counts
from .start_indexes import load_start_indexes
from .tables import read_csv_file
from .text import first_few, with_avi
from .video import VideoReader

SPLITS = ("train", "val", "test", "all")
TRACINGS_HEADER = ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]


def read_filelist(path: Path) -> pd.DataFrame:
    """FileList.csv with FileName (ending in .avi), EF (float), Split (lower case) checked."""
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist")
    table = read_csv_file(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    missing = [c for c in ("FileName", "EF", "Split") if c not in table.columns]
    if missing:
        raise BadInputError(f"{path} lacks required column(s) {', '.join(missing)} (has: {', '.join(table.columns)})")
    for i, name in enumerate(table["FileName"]):
        if not name.strip():
            raise BadInputError(f"{path} data row {i + 1}: empty FileName")
    table["FileName"] = table["FileName"].map(with_avi)
    duplicated = table["FileName"][table["FileName"].duplicated()]
    if len(duplicated):
        raise BadInputError(f"{path}: FileName {duplicated.iloc[0]} appears more than once")
    ef = pd.to_numeric(table["EF"].str.strip(), errors="coerce")
    for i in np.flatnonzero(ef.isna() | (ef < 0) | (ef > 100)):
        raw, where = table["EF"].iloc[i], f"{path} data row {i + 1} (FileName {table['FileName'].iloc[i]})"
        if raw.strip().lower() not in ("", "nan") and np.isnan(ef.iloc[i]):
            raise BadInputError(f"{where}: EF {raw!r} is not a number")
        problem = "missing (NaN)" if np.isnan(ef.iloc[i]) else "outside [0, 100]"
        raise BadInputError(f"{where}: EF {raw!r} is {problem}")
    table["EF"] = ef
    table["Split"] = table["Split"].str.strip().str.lower()
    return table


def traced_frame_counts(path: Path, listed: set[str]) -> pd.Series:
    """Distinct traced frames per video (index: names with .avi) of VolumeTracings.csv."""
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist")
    try:
        with open(path, encoding="utf-8-sig") as f:
            header = [h.strip() for h in f.readline().strip().split(",")]
    except UnicodeDecodeError:
        raise BadInputError(f"{path} is not a UTF-8 text file") from None
    if header != TRACINGS_HEADER:
        raise BadInputError(f"{path}: header must be exactly {','.join(TRACINGS_HEADER)}, got {','.join(header)}")
    # names= (not the file's): the header was checked above with surrounding spaces stripped
    table = read_csv_file(path, header=0, names=TRACINGS_HEADER, usecols=["FileName", "Frame"], dtype=str,
                          skipinitialspace=True, encoding="utf-8-sig")
    frame = pd.to_numeric(table["Frame"], errors="coerce")
    bad = np.flatnonzero(frame.isna() | (frame < 0) | (frame != frame.round()))
    if len(bad):
        i = bad[0]
        raise BadInputError(f"{path} data row {i + 1} (FileName {table['FileName'].iloc[i]}): "
                         f"Frame {table['Frame'].iloc[i]!r} is not a frame index")
    names = table["FileName"].map(with_avi)
    unknown = sorted(set(names) - listed)
    if unknown:  # harmless (e.g. a FileList trimmed to a subset), but worth knowing
        warnings.warn(f"{path}: tracings of {len(unknown)} video(s) not in FileList.csv are ignored: {first_few(unknown)}")
    return pd.Series(frame.to_numpy(), index=names.to_numpy()).groupby(level=0).nunique()


def load_split(root: str | os.PathLike, split: str, cache_dir=None) -> pd.DataFrame:
    """Rows of FileList.csv in `split` (or all) whose video exists and has >= 2 traced frames, with the
    frame count of every video read from its header (column `frames`; see headers.py)."""
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"EchoNet data folder {root} does not exist")
    if not any(root.iterdir()):
        raise MissingInputError(f"EchoNet data folder {root} is empty")
    table = read_filelist(root / "FileList.csv")
    traced = traced_frame_counts(root / "VolumeTracings.csv", set(table["FileName"]))
    if split != "all":
        table = table[table["Split"] == split]
    videos = root / "Videos"
    if not videos.is_dir():
        raise MissingInputError(f"video folder {videos} does not exist")
    present = set(os.listdir(videos))
    missing = [name for name in table["FileName"] if name not in present]
    if missing:
        raise MissingInputError(f"{len(missing)} video(s) of split '{split}' listed in {root / 'FileList.csv'} "
                                f"are missing from {videos}: {first_few(missing)}")
    listed = len(table)
    table = table[table["FileName"].map(traced).fillna(0).to_numpy() >= 2]
    if table.empty:
        raise BadInputError(f"split '{split}' of {root} has no video with >= 2 traced frames "
                            f"({listed} listed in FileList.csv)")
    table = table.reset_index(drop=True)
    counts = frame_counts(videos, list(table["FileName"]), cache_dir)
    table["frames"] = table["FileName"].map(counts).astype(np.int64)
    return table


class EchoNet(torch.utils.data.Dataset):
    """One clip per item: dict(name, image [3, frames, 112, 112] float32, label [1], ef [1]).

    Attributes: `vnames` (names with .avi, FileList order), `labels` (float32 EF), `filelist`
    (the kept FileList rows; EF as float, other columns as text).
    `set_epoch` writes the epoch into shared memory, so DataLoader workers see it too, persistent
    ones included (call it before iterating the loader for that epoch).
    """

    def __init__(self, root, split: str = "train", frames: int = 16, frequency: int = 2, aug: bool = False,
                 seed: int | None = None, cache_dir=None, max_frames: int = 250):
        if not isinstance(split, str) or split.lower() not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)} (any case), got {split!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be None or a non-negative int, got {seed!r}")
        self.root = Path(root)
        self.split = split.lower()
        # as in the released code, max_frames caps the clip length
        self.frames = min(require_positive_int("frames", frames), require_positive_int("max_frames", max_frames))
        self.frequency = require_positive_int("frequency", frequency)
        self.aug = bool(aug)
        self.seed = None if seed is None else int(seed)
        # shared memory: persistent DataLoader workers hold copies of this object but see set_epoch
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.filelist = load_split(self.root, self.split, cache_dir)
        self.vnames: list[str] = list(self.filelist["FileName"])
        self.labels: np.ndarray = self.filelist["EF"].to_numpy(np.float32)
        self.num_frames: np.ndarray = self.filelist["frames"].to_numpy(np.int64)  # from the headers

    def __len__(self) -> int:
        return len(self.vnames)

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of `epoch` (only matters with an int seed)."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch!r}")
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def video_path(self, index: int) -> Path:
        return self.root / "Videos" / self.vnames[index]

    def _open(self, index: int):
        """The video's frames: a VideoReader, or the decoded-video cache."""
        if self.cache_dir is not None:
            return open_cached(self.video_path(index), self.cache_dir)
        return VideoReader(self.video_path(index))

    def _generator(self, index: int) -> torch.Generator | None:
        if self.seed is None:
            return None  # torch's global RNG
        seed = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(seed))

    def _random_start(self, num_frames: int, generator: torch.Generator | None) -> int:
        high = num_starts(num_frames, self.frames, self.frequency)
        return int(torch.randint(high, (1,), generator=generator))

    def _random_offset(self, generator: torch.Generator | None) -> tuple[int, int] | None:
        if not self.aug:
            return None
        top, left = torch.randint(2 * PAD + 1, (2,), generator=generator).tolist()
        return top, left

    def _cut(self, video, starts, offsets) -> torch.Tensor:
        """Clips [len(starts), 3, frames, H, W] at `starts` from one read of `video`, cropped at `offsets`
        (one (top, left) per start) with augmentation."""
        return cut_clips(video, starts, self.frames, self.frequency, offsets if self.aug else None)

    def _item(self, index: int, image: torch.Tensor) -> dict:
        label = torch.tensor([self.labels[index]], dtype=torch.float32)
        return {"name": self.vnames[index], "image": image, "label": label, "ef": label.clone()}

    def __getitem__(self, index: int) -> dict:
        index = range(len(self))[index]
        generator = self._generator(index)
        with self._open(index) as video:
            start = self._random_start(video.num_frames, generator)
            (clip,) = self._cut(video, [start], [self._random_offset(generator)])
        return self._item(index, clip)


class EchoNetRNC(EchoNet):
    """Two independent views (own start and crop each) of one video, cut from a single read."""

    def __getitem__(self, index: int) -> tuple[dict, dict]:
        index = range(len(self))[index]
        generator = self._generator(index)
        with self._open(index) as video:
            starts, offsets = [], []
            for _ in range(2):
                starts.append(self._random_start(video.num_frames, generator))
                offsets.append(self._random_offset(generator))
            view1, view2 = self._cut(video, starts, offsets)
        return self._item(index, view1), self._item(index, view2)


class EchoNetFixedClips(EchoNet):
    """Fixed clips per video, for validation and testing: dict(name, image [n_clips, 3, frames, 112, 112],
    starts, label, ef).

    Starts come from `path_test_start_indexes` (pickle / JSON / CSV, see start_indexes.py; n_clips is
    then taken from the file), else they are drawn once with numpy.random.default_rng(seed) uniformly
    in each video's valid range. Either way they are kept in `self.start_indexes` (name -> int64 array).
    """

    def __init__(self, root, split: str = "val", frames: int = 16, frequency: int = 2, n_clips: int = 1,
                 seed: int = 0, path_test_start_indexes=None, cache_dir=None, max_frames: int = 250):
        super().__init__(root, split, frames, frequency, aug=False, seed=None, cache_dir=cache_dir,
                         max_frames=max_frames)
        counts = dict(zip(self.vnames, self.num_frames.tolist()))
        if path_test_start_indexes is None:
            n_clips = require_positive_int("n_clips", n_clips)
            rng = np.random.default_rng(seed)
            highs = {name: num_starts(counts[name], self.frames, self.frequency) for name in self.vnames}
            self.start_indexes = {name: rng.integers(0, highs[name], size=n_clips).astype(np.int64)
                                  for name in self.vnames}
        else:
            path = os.fspath(path_test_start_indexes)
            starts = load_start_indexes(path)
            missing = [name for name in self.vnames if name not in starts]
            if missing:
                raise BadInputError(f"{path} has no start indexes for {len(missing)} video(s) of split "
                                    f"'{self.split}': {first_few(missing)}")
            for name in self.vnames:
                high = num_starts(counts[name], self.frames, self.frequency)
                for start in starts[name]:
                    if not 0 <= start < high:
                        raise BadInputError(
                            f"{path}: start {start} of {name} is out of range [0, {high}) "
                            f"({counts[name]} frames, frames={self.frames}, frequency={self.frequency})")
            self.start_indexes = {name: starts[name] for name in self.vnames}
        self.n_clips = len(self.start_indexes[self.vnames[0]])

    def _starts(self, index: int) -> np.ndarray:
        return self.start_indexes[self.vnames[index]]

    def __getitem__(self, index: int) -> dict:
        index = range(len(self))[index]
        starts = self._starts(index)
        with self._open(index) as video:
            clips = self._cut(video, starts, None)
        item = self._item(index, clips)
        item["starts"] = torch.from_numpy(starts.copy())
        return item


class EchoNetTest(EchoNetFixedClips):
    """The test split at fixed start indexes (the released `test_start_indexes.pkl`, or drawn with `seed`).

    With `trial=k` an item is the single clip at the k-th start of each video, image [3, frames, 112, 112],
    as the released class gives it; with `trial=None` (default) it holds all clips, [n_clips, 3, ...].
    """

    def __init__(self, root, split: str = "test", frames: int = 16, frequency: int = 2,
                 path_test_start_indexes=None, trial: int | None = None, n_clips: int = 3, seed: int = 0,
                 cache_dir=None, max_frames: int = 250):
        super().__init__(root, split, frames, frequency, n_clips=n_clips, seed=seed,
                         path_test_start_indexes=path_test_start_indexes, cache_dir=cache_dir, max_frames=max_frames)
        if trial is not None and not 0 <= trial < self.n_clips:
            raise ValueError(f"trial must lie in [0, {self.n_clips}) (one per start), got {trial!r}")
        self.trial = trial

    def _starts(self, index: int) -> np.ndarray:
        starts = super()._starts(index)
        return starts if self.trial is None else starts[self.trial:self.trial + 1]

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        if self.trial is not None:
            item["image"] = item["image"][0]
        return item


class EchoNetAllClips(EchoNetFixedClips):
    """An EchoNet split with every video's grid starts (datasets.clips.clip_grid): dict(name, image
    [n_clips, 3, frames, 112, 112], starts [n_clips], label, ef), n_clips varying per video
    (`self.clip_counts`; `self.n_clips` is None; utils.evaluation.inference takes one video per item)."""

    def __init__(self, root, split: str = "test", frames: int = 16, frequency: int = 2,
                 clip_stride: int | None = None, cache_dir=None, max_frames: int = 250):
        super().__init__(root, split, frames, frequency, n_clips=1, seed=0, cache_dir=cache_dir,
                         max_frames=max_frames)
        self.clip_stride = default_clip_stride(self.frames, self.frequency) if clip_stride is None else \
            require_positive_int("clip_stride", clip_stride)
        # the drawn start of the parent class is replaced by the grid
        self.start_indexes = {name: clip_grid(int(count), self.frames, self.frequency, self.clip_stride)
                              for name, count in zip(self.vnames, self.num_frames)}
        self.clip_counts = np.array([len(self.start_indexes[name]) for name in self.vnames], dtype=np.int64)
        self.n_clips = None
