"""A generic labelled video folder: `labels.csv` next to the videos.

    folder/labels.csv      header `file,label`, optionally `patient` (names matched ignoring case and
                           surrounding spaces; other columns are ignored), one row per video
    folder/<file>          the videos, `file` relative to the folder (sub-folders allowed)

`label` is a number: an EF in % for regression or a class (0 / 1) for classification. Every row
is checked before anything is returned, and the first problem fails with one line naming the
file, the data row (1-based, header not counted) and the value: a missing column, an empty or
repeated file name, a missing video (FileNotFoundError), a label that is not a finite number, an
empty patient. Without a `patient` column every video is its own patient (its file name).
Decoding the videos is datasets.sources.any_video's job; this module only pairs paths with labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from utils.script.errors import BadInputError, MissingInputError

from ..tables import read_csv_file

LABELS_FILE = "labels.csv"
REQUIRED = ("file", "label")


@dataclass(frozen=True)
class LabelledVideo:
    path: Path
    label: float
    name: str  # the `file` cell as written (stripped)
    row: int  # 1-based data row of labels.csv
    patient: str = ""  # the `patient` cell (stripped), else the name


def read_label_folder(folder, labels_file: str = LABELS_FILE) -> list[LabelledVideo]:
    """Rows of folder/labels_file (in file order) with their video paths checked to exist."""
    folder = Path(folder)
    path = folder / labels_file
    if not folder.is_dir():
        raise MissingInputError(f"video folder {folder} does not exist")
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist (expected a CSV with header 'file,label')")
    table = read_csv_file(path, "a CSV with header 'file,label'", dtype=str, keep_default_na=False,
                          encoding="utf-8-sig")
    columns = {str(c).strip().lower(): c for c in table.columns}
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise BadInputError(f"{path} lacks column(s) {', '.join(missing)} "
                            f"(has: {', '.join(map(str, table.columns))})")

    videos, first_row = [], {}
    patients = table[columns["patient"]] if "patient" in columns else table[columns["file"]]
    for i, (name, raw, patient) in enumerate(zip(table[columns["file"]], table[columns["label"]], patients)):
        name, raw, patient, row = str(name).strip(), str(raw).strip(), str(patient).strip(), i + 1
        if not name:
            raise BadInputError(f"{path} data row {row}: empty file name")
        if name in first_row:
            raise BadInputError(f"{path} data rows {first_row[name]} and {row}: file {name!r} is listed twice")
        first_row[name] = row
        try:
            label = float(raw)
        except ValueError:
            label = math.nan
        if not math.isfinite(label):
            raise BadInputError(f"{path} data row {row} ({name}): label {raw!r} is not a finite number")
        video = folder / name
        if not video.is_file():
            raise MissingInputError(f"{path} data row {row}: video {video} does not exist")
        if not patient:
            raise BadInputError(f"{path} data row {row} ({name}): empty patient")
        videos.append(LabelledVideo(path=video, label=label, name=name, row=row, patient=patient))
    if not videos:
        raise BadInputError(f"{path} lists no video")
    return videos
