"""HMC-QU (Hamad Medical Corporation / Qatar University) recordings and MI labels for MI detection, read as the
public release ships them: root/A4C.xlsx, root/A2C.xlsx and the recordings in root/HMC-QU/A4C/, root/HMC-QU/A2C/.

The sheets are read in the published layout (two header rows, segment cells 'MI' / 'non-MI', a '*' after the
HMC-QU-TAU names, a footnote row) or with one header row, as .xlsx (openpyxl) or CSV. A recording is MI-positive
(label 1) if ANY of its segments is MI. `patient_id` drops the view and normal-subject tags, so a patient's two
views share it; `cycle=True` reads the annotated cycle ('Reference Frame' -> 'End of Cycle', 1-based frames at the
native 25 fps). A bad cell is an error naming the data row and the column; rows without a video and videos
without a row are reported once per group (warnings.warn, and in HMCQUListing).

Decoding (sector crop, 25 -> 50 fps, 112x112) is datasets.sources.any_video's job: this module only pairs
paths with labels.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from utils.script.errors import BadInputError, MissingInputError

from ..video import VIDEO_EXTENSIONS

VIEWS = ("A4C", "A2C")
DEFAULT_VIDEO_COLUMN = "ECHO"
CYCLE_COLUMNS = ("Reference Frame", "End of Cycle")
TAU_MARK = "*"
_SEGMENT = re.compile(r"^seg\d+$")  # matched against normalised column names
_VIEW_TAG = re.compile(r"_?(?:[24]ch|ch[24])(?:_\d+)?$", re.IGNORECASE)
_NORMAL_TAG = re.compile(r"(?<=\d)n$", re.IGNORECASE)  # 'ES000100 N': a normal subject
_WORDS = {"mi": 1, "nonmi": 0}


@dataclass(frozen=True)
class Recording:
    """One labelled recording: label 1 = MI in at least one segment; row = data row of the sheet (1-based);
    cycle = (Reference Frame, End of Cycle), 1-based native frames, when read; tau = marked '*' in the sheet."""
    path: Path
    label: int
    recording: str
    patient: str
    view: str
    row: int
    cycle: tuple[int, int] | None = None
    tau: bool = False


@dataclass
class HMCQUListing:
    recordings: list[Recording]
    unmatched_rows: list[str] = field(default_factory=list)  # sheet names with no video
    unmatched_videos: list[Path] = field(default_factory=list)  # videos with no sheet row


@dataclass
class Sheet:
    """A label sheet's data rows as text, under the names of its columns."""
    path: Path
    table: pd.DataFrame  # data rows only, columns = header names (unique)

    def cell(self, i: int, column: str) -> str:
        return str(self.table[column].iloc[i]).strip()

    def where(self, i: int, name: str, column: str) -> str:
        return f"{self.path} data row {i + 1} ({name}), column '{column}'"


def normalise_name(name) -> str:
    """Compare key of a recording or column name: lower case, no white space, no video extension, no '*'."""
    key = re.sub(r"\s+", "", str(name)).lower().rstrip(TAU_MARK)
    for ext in VIDEO_EXTENSIONS:
        if key.endswith(ext):
            return key[:-len(ext)]
    return key


def patient_id(recording: str) -> str:
    """'ES0001 _4CH_1' -> 'ES0001', 'ES000100 N_4CH_1' -> 'ES000100', 'ES00010_CH2_2*' -> 'ES00010'."""
    compact = re.sub(r"\s+", "", recording).rstrip(TAU_MARK)
    for ext in VIDEO_EXTENSIONS:
        if compact.lower().endswith(ext):
            compact = compact[:-len(ext)]
    without_view = _VIEW_TAG.sub("", compact) or compact
    return _NORMAL_TAG.sub("", without_view) or without_view


def check_view(view: str) -> str:
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


def _read_cells(path: Path) -> pd.DataFrame:
    """Every cell of the sheet as text, no header ('' for empty cells)."""
    if not path.is_file():
        raise MissingInputError(f"HMC-QU label sheet {path} does not exist")
    excel = path.suffix.lower() in (".xlsx", ".xlsm")
    if excel:
        try:
            import openpyxl  # noqa: F401  (pandas' xlsx engine)
        except ImportError:
            raise BadInputError(f"reading {path} needs openpyxl (pip install openpyxl), "
                                "or save the sheet as CSV and pass labels_file") from None
    try:
        if excel:
            cells = pd.read_excel(path, header=None, dtype=str)
        else:
            try:
                cells = pd.read_csv(path, header=None, dtype=str, encoding="utf-8-sig", skip_blank_lines=False)
            except UnicodeDecodeError:  # "CSV" as saved by older Excel versions
                cells = pd.read_csv(path, header=None, dtype=str, encoding="cp1252", skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise BadInputError(f"HMC-QU label sheet {path} is empty") from None
    except (ValueError, OSError, pd.errors.ParserError) as e:  # not a spreadsheet, unreadable
        raise BadInputError(f"cannot read HMC-QU label sheet {path}: {' '.join(str(e).split())}") from None
    if cells.empty:
        raise BadInputError(f"HMC-QU label sheet {path} is empty")
    return cells.fillna("").astype(str).apply(lambda column: column.str.strip())


def _header_names(row) -> set[str]:
    return {normalise_name(c) for c in row if c}


def read_sheet(path, wanted: Sequence[str] = ()) -> Sheet:
    """The label sheet with its one or two header rows turned into column names. The second row is a header
    when it names a segment (SEG<n>), a cycle column or one of `wanted`."""
    path = Path(path)
    cells = _read_cells(path)
    known = {normalise_name(c) for c in (*CYCLE_COLUMNS, *wanted)}
    second = len(cells) > 1 and any(_SEGMENT.match(key) or key in known for key in _header_names(cells.iloc[1]))
    top = list(cells.iloc[0])
    names = [low or high for high, low in zip(top, cells.iloc[1])] if second else top
    names = [name or f"column {k + 1}" for k, name in enumerate(names)]
    seen = {}
    for k, name in enumerate(names):  # repeated names get a suffix, as pandas does
        key = normalise_name(name)
        if key in seen:
            names[k] = f"{name}.{seen[key]}"
        seen[key] = seen.get(key, 0) + 1
    table = cells.iloc[2 if second else 1:].reset_index(drop=True)
    table.columns = names
    return Sheet(path, table)


def _find_column(sheet: Sheet, wanted: str, what: str = "pass video_column / label_columns") -> str:
    by_key = {normalise_name(c): c for c in sheet.table.columns}
    if normalise_name(wanted) not in by_key:
        raise BadInputError(f"{sheet.path} has no column '{wanted}' (has: {', '.join(map(str, sheet.table.columns))})"
                            f"; {what}")
    return by_key[normalise_name(wanted)]


def _label_columns(sheet: Sheet, label_columns: Sequence[str] | None) -> list[str]:
    if label_columns is not None:
        return [_find_column(sheet, c) for c in label_columns]
    columns = [c for c in sheet.table.columns if _SEGMENT.match(normalise_name(c))]
    if not columns:
        raise BadInputError(f"{sheet.path} has no segment columns SEG<n> "
                            f"(has: {', '.join(map(str, sheet.table.columns))}); pass label_columns")
    return columns


def _segment(raw: str) -> float:
    """MI -> 1, non-MI -> 0 (any case, spaces, hyphens), or the number written; NaN for anything else."""
    word = re.sub(r"[\s_-]+", "", raw).lower()
    if word in _WORDS:
        return _WORDS[word]
    try:
        return float(raw)
    except ValueError:
        return math.nan


def _label(sheet: Sheet, i: int, columns: Sequence[str], name: str) -> int:
    """1 if any segment cell of data row i is MI (or 1), else 0; anything else is an error."""
    label = 0
    for column in columns:
        raw = sheet.cell(i, column)
        value = _segment(raw)
        if value not in (0.0, 1.0):
            raise BadInputError(f"{sheet.where(i, name, column)}: {raw!r} is not 0 or 1 (nor MI / non-MI)")
        label = max(label, int(value))
    return label


def _frame_number(sheet: Sheet, i: int, column: str, name: str) -> int:
    raw = sheet.cell(i, column)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value == int(value) and value >= 1):
        raise BadInputError(f"{sheet.where(i, name, column)}: {raw!r} is not a frame number (1, 2, ...)")
    return int(value)


def _cycle(sheet: Sheet, i: int, columns: Sequence[str], name: str) -> tuple[int, int]:
    first, last = (_frame_number(sheet, i, column, name) for column in columns)
    if last <= first:
        raise BadInputError(f"{sheet.where(i, name, columns[1])}: {last} is not after the reference frame {first}")
    return first, last


def _some(items, k: int = 5) -> str:
    items = [str(x) for x in items]
    return ", ".join(items[:k]) + (", ..." if len(items) > k else "")


def _videos_by_key(folder: Path) -> dict[str, Path]:
    videos = {}
    listed = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]  # no hidden temp files
    for video in sorted(p for p in listed if p.suffix.lower() in VIDEO_EXTENSIONS):
        key = normalise_name(video.name)
        if key in videos:
            raise BadInputError(f"videos {videos[key].name} and {video.name} in {folder} have the same name "
                                "once case, spaces and extension are ignored")
        videos[key] = video
    return videos


def _is_skipped(sheet: Sheet, i: int, name: str, columns: Sequence[str], name_column: str) -> bool:
    """Blank rows and footnotes ('* indicates HMC-QU-TAU'): no segment cell filled."""
    if any(sheet.cell(i, c) for c in columns):
        if not name:
            raise BadInputError(f"{sheet.path} data row {i + 1}: empty '{name_column}' in a row with labels")
        return False
    return not name or name.startswith(TAU_MARK)


def list_recordings(root, view: str = "A4C", labels_file=None, video_dir=None,
                    video_column: str = DEFAULT_VIDEO_COLUMN, label_columns: Sequence[str] | None = None,
                    cycle: bool = False) -> HMCQUListing:
    """Pair the sheet's rows with the videos; recordings sorted by name, unmatched ones reported once."""
    root, view = Path(root), check_view(view)
    path = Path(labels_file) if labels_file is not None else _default_labels_file(root, view)
    folder = Path(video_dir) if video_dir is not None else _default_video_dir(root, view)
    if not folder.is_dir():
        raise MissingInputError(f"HMC-QU video folder {folder} does not exist")
    sheet = read_sheet(path, wanted=[video_column, *(label_columns or [])])
    name_column = _find_column(sheet, video_column)
    columns = _label_columns(sheet, label_columns)
    cycle_columns = [_find_column(sheet, c, "pass --hmcqu_frames all to use whole recordings")
                     for c in CYCLE_COLUMNS] if cycle else []
    videos = _videos_by_key(folder)

    recordings, unmatched_rows, seen = [], [], {}
    for i in range(len(sheet.table)):
        name = sheet.cell(i, name_column)
        if _is_skipped(sheet, i, name, columns, name_column):
            continue
        key = normalise_name(name)
        if key in seen:
            raise BadInputError(f"{path} data rows {seen[key] + 1} and {i + 1} name the same recording {name!r}")
        seen[key] = i
        label = _label(sheet, i, columns, name)
        frames = _cycle(sheet, i, cycle_columns, name) if cycle else None
        if key not in videos:
            unmatched_rows.append(name.rstrip(TAU_MARK).strip())
            continue
        video = videos[key]
        recordings.append(Recording(path=video, label=label, recording=video.stem, patient=patient_id(video.stem),
                                    view=view, row=i + 1, cycle=frames, tau=name.endswith(TAU_MARK)))
    unmatched_videos = [video for key, video in videos.items() if key not in seen]

    if unmatched_rows:
        warnings.warn(f"{path}: {len(unmatched_rows)} row(s) have no video in {folder}: {_some(unmatched_rows)}")
    if unmatched_videos:
        warnings.warn(f"{folder}: {len(unmatched_videos)} video(s) have no row in {path}: "
                      f"{_some(v.name for v in unmatched_videos)}")
    recordings.sort(key=lambda r: r.recording)
    return HMCQUListing(recordings, unmatched_rows, unmatched_videos)
