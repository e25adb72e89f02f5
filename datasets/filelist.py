"""EchoNet-Dynamic's lists read and checked: `FileList.csv` (FileName, EF, Split required; FileName with or
without .avi; Split in any case) and `VolumeTracings.csv` (header FileName,X1,Y1,X2,Y2,Frame). As in the released
loader only videos with >= 2 distinct traced frames are kept (silently); tracings of videos that FileList.csv
does not list are ignored with a warning. A listed video that is missing or cannot be opened is an error, found
by a cached header pass before any clip is read (headers.py).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from utils.script.errors import BadInputError, MissingInputError, first_few

from .headers import frame_counts
from .tables import read_csv_file

SPLITS = ("train", "val", "test", "all")
TRACINGS_HEADER = ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]


def with_avi(name) -> str:
    """An EchoNet video name as FileList.csv's readers key it: stripped, '.avi' added when missing."""
    name = str(name).strip()
    return name if name.lower().endswith(".avi") else name + ".avi"


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
