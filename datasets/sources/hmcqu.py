"""HMC-QU (Hamad Medical Corporation / Qatar University) recordings and MI labels for MI detection.

Layout of the public release (Kaggle 'hmcqu-dataset'), `root` being the unpacked folder:

    root/A4C.xlsx                     one row per A4C recording (A2C.xlsx for the A2C view)
    root/HMC-QU/A4C/ES0001 _4CH_1.avi  the recordings (25 fps, 422x636 up to 768x1024)
    root/HMC-QU/A2C/...

The spreadsheet names the recording in column 'ECHO' (no extension) and gives one column per
myocardial segment, 'SEG1' .. 'SEG7' (1 = the segment shows MI, 0 = not). A recording is
MI-positive (label 1) if ANY of its segment columns is 1. Other columns ('Reference Frame',
'End of Cycle', 'LV Wall Ground-truth Segmentation Masks', ...) are ignored.

Copies differ, so everything is configurable:
- `labels_file`: the sheet (default: root/<view>.xlsx, else root/<view>.csv). CSV is read with
  pandas alone; .xlsx needs openpyxl (a one-line error says so when it is missing).
- `video_dir`: the videos (default: root/HMC-QU/<view>, else root/<view>, else root).
- `video_column` (default 'ECHO') and `label_columns` (default: every column named SEG<n>).
Column names and recording names are matched ignoring case and white space; recording names also
ignore a video extension (.avi, .mp4, .mov, .mkv), so 'es0001_4ch_1.AVI' matches
'ES0001 _4CH_1.avi'. Rows without a video and videos without a row are not errors: each group is
reported once (one warnings.warn line per group, and returned in HMCQUListing).

The patient id strips the view tag ('_4CH_1', '_2CH_1', any case) from the recording name, so
'ES0001 _4CH_1' and 'ES0001 _2CH_1' both belong to patient 'ES0001' (used for patient-level
folds). This assumes the release's naming; pass `patient_of` to use another rule.

Decoding (sector crop, 25 -> 50 fps, 112x112) is datasets.sources.any_video's job: this module only pairs
paths with labels. Bad input fails with one line naming the file, the row and the column.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from utils.script.errors import BadInputError, MissingInputError

VIEWS = ("A4C", "A2C")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv")
DEFAULT_VIDEO_COLUMN = "ECHO"
_SEGMENT = re.compile(r"^seg\d+$")  # matched against normalised column names
_VIEW_TAG = re.compile(r"_?[24]ch(_\d+)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Recording:
    """One labelled recording: label 1 = MI in at least one segment; row = data row of the sheet (1-based)."""
    path: Path
    label: int
    recording: str
    patient: str
    view: str
    row: int


@dataclass
class HMCQUListing:
    recordings: list[Recording]
    unmatched_rows: list[str] = field(default_factory=list)  # sheet names with no video
    unmatched_videos: list[Path] = field(default_factory=list)  # videos with no sheet row


def normalise_name(name) -> str:
    """Compare key of a recording or column name: lower case, no white space, no video extension."""
    key = re.sub(r"\s+", "", str(name)).lower()
    for ext in VIDEO_EXTENSIONS:
        if key.endswith(ext):
            return key[:-len(ext)]
    return key


def patient_id(recording: str) -> str:
    """'ES0001 _4CH_1' -> 'ES0001': the recording name without white space and view tag."""
    compact = re.sub(r"\s+", "", recording)
    for ext in VIDEO_EXTENSIONS:
        if compact.lower().endswith(ext):
            compact = compact[:-len(ext)]
    return _VIEW_TAG.sub("", compact) or compact


def _check_view(view: str) -> str:
    key = str(view).strip().upper()
    if key not in VIEWS:
        raise ValueError(f"unknown HMC-QU view {view!r}: use {' or '.join(VIEWS)}")
    return key


def _default_labels_file(root: Path, view: str) -> Path:
    for name in (f"{view}.xlsx", f"{view}.csv"):
        if (root / name).is_file():
            return root / name
    raise MissingInputError(f"no label sheet {view}.xlsx or {view}.csv in {root}; pass labels_file")


def _default_video_dir(root: Path, view: str) -> Path:
    for folder in (root / "HMC-QU" / view, root / view, root):
        if folder.is_dir():
            return folder
    raise MissingInputError(f"HMC-QU folder {root} does not exist")


def read_sheet(path) -> pd.DataFrame:
    """The label sheet as text cells (.xlsx through pandas + openpyxl; anything else as CSV)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"HMC-QU label sheet {path} does not exist")
    excel = path.suffix.lower() in (".xlsx", ".xlsm")
    if excel:
        try:
            import openpyxl  # noqa: F401  (pandas' xlsx engine; optional)
        except ImportError:
            raise BadInputError(f"reading {path} needs openpyxl (pip install openpyxl), "
                                "or save the sheet as CSV and pass labels_file") from None
    try:
        if excel:
            return pd.read_excel(path, dtype=str, keep_default_na=False)
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise BadInputError(f"HMC-QU label sheet {path} is empty") from None
    except (ValueError, OSError) as e:  # not a spreadsheet, bad encoding, unreadable
        raise BadInputError(f"cannot read HMC-QU label sheet {path}: {e}") from None


def _find_column(table: pd.DataFrame, wanted: str, path: Path) -> str:
    by_key = {normalise_name(c): c for c in table.columns}
    if normalise_name(wanted) not in by_key:
        raise BadInputError(f"{path} has no column '{wanted}' (has: {', '.join(map(str, table.columns))}); "
                            "pass video_column / label_columns")
    return by_key[normalise_name(wanted)]


def _label(table: pd.DataFrame, i: int, columns: Sequence[str], path: Path, name: str) -> int:
    """1 if any segment cell of data row i is 1, else 0; anything but 0 / 1 is an error."""
    label = 0
    for column in columns:
        raw = str(table[column].iloc[i]).strip()
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if value not in (0.0, 1.0):
            raise BadInputError(f"{path} data row {i + 1} ({name}), column '{column}': "
                                f"{raw!r} is not 0 or 1")
        label = max(label, int(value))
    return label


def _some(items, k: int = 5) -> str:
    items = [str(x) for x in items]
    return ", ".join(items[:k]) + (", ..." if len(items) > k else "")


def list_recordings(root, view: str = "A4C", labels_file=None, video_dir=None,
                    video_column: str = DEFAULT_VIDEO_COLUMN, label_columns: Sequence[str] | None = None,
                    patient_of: Callable[[str], str] = patient_id) -> HMCQUListing:
    """Pair the sheet's rows with the videos; recordings sorted by name, unmatched ones reported once."""
    root, view = Path(root), _check_view(view)
    path = Path(labels_file) if labels_file is not None else _default_labels_file(root, view)
    folder = Path(video_dir) if video_dir is not None else _default_video_dir(root, view)
    if not folder.is_dir():
        raise MissingInputError(f"HMC-QU video folder {folder} does not exist")
    table = read_sheet(path)
    name_column = _find_column(table, video_column, path)
    if label_columns is None:
        columns = [c for c in table.columns if _SEGMENT.match(normalise_name(c))]
        if not columns:
            raise BadInputError(f"{path} has no segment columns SEG1..SEG7 "
                                f"(has: {', '.join(map(str, table.columns))}); pass label_columns")
    else:
        columns = [_find_column(table, c, path) for c in label_columns]

    videos = {}
    listed = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]  # no hidden temp files
    for video in sorted(p for p in listed if p.suffix.lower() in VIDEO_EXTENSIONS):
        key = normalise_name(video.name)
        if key in videos:
            raise BadInputError(f"videos {videos[key].name} and {video.name} in {folder} have the same name "
                                "once case, spaces and extension are ignored")
        videos[key] = video

    recordings, unmatched_rows, seen = [], [], {}
    for i, name in enumerate(table[name_column]):
        if not str(name).strip():
            if any(str(table[c].iloc[i]).strip() for c in columns):
                raise BadInputError(f"{path} data row {i + 1}: empty '{name_column}' in a row with labels")
            continue  # a blank row (sheets often end with some)
        key = normalise_name(name)
        if key in seen:
            raise BadInputError(f"{path} data rows {seen[key] + 1} and {i + 1} name the same recording {name!r}")
        seen[key] = i
        label = _label(table, i, columns, path, str(name).strip())
        if key not in videos:
            unmatched_rows.append(str(name).strip())
            continue
        video = videos[key]
        recordings.append(Recording(path=video, label=label, recording=video.stem,
                                    patient=patient_of(video.stem), view=view, row=i + 1))
    unmatched_videos = [video for key, video in videos.items() if key not in seen]

    if unmatched_rows:
        warnings.warn(f"{path}: {len(unmatched_rows)} row(s) have no video in {folder}: {_some(unmatched_rows)}")
    if unmatched_videos:
        warnings.warn(f"{folder}: {len(unmatched_videos)} video(s) have no row in {path}: "
                      f"{_some(v.name for v in unmatched_videos)}")
    recordings.sort(key=lambda r: r.recording)
    return HMCQUListing(recordings, unmatched_rows, unmatched_videos)
