"""One EF per study: the per-file rows of predict.py (OUT.csv) summed up per study into OUT.studies.csv.

A study is the DICOM StudyInstanceUID of a row (`study` = the UID, `grouped_by` = study_uid) or, for a file
without one (AVI, MP4, a DICOM without the tag), its folder (`grouped_by` = folder). Per study, in the order of
its first file: files seen, scored, skipped (and why: `skip_reasons` as 'reason: count; ...'), failed, scored
files flagged unfamiliar, and the EF over the scored files not flagged: mean, SD (n - 1; empty under 2) and n.
It is built from the final OUT.csv text alone, so a resumed or a torchrun run writes the same table.
"""
import math
import os
import re
from collections import Counter

import pandas as pd

from utils.files.atomic import atomic_open

STUDY_COLUMNS = ["study", "grouped_by", "files", "scored", "skipped", "failed", "skip_reasons", "unfamiliar",
                 "ef_mean", "ef_sd", "ef_n"]


def skip_category(reason: str) -> str:
    """The kind of a skip reason, without the numbers of one file: '5 frames: fewer than --min_frames 8' ->
    'fewer than --min_frames'; 'no image (Basic Text SR Storage): not a cine loop' -> 'no image'."""
    for option in ("--min_frames", "--min_seconds"):
        if option in reason:
            return ("fewer than " if option == "--min_frames" else "shorter than ") + option
    return re.split(r"[:(]", reason, maxsplit=1)[0].strip() or "unknown"


def _study_key(row) -> tuple[str, str]:
    uid = row.get("study_uid", "")
    return (uid, "study_uid") if uid else (os.path.dirname(row["file"]), "folder")


def _ef_cells(values) -> dict:
    n = len(values)
    mean = sum(values) / n if n else math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return {"ef_mean": "" if n == 0 else f"{mean:.5f}", "ef_sd": "" if n < 2 else f"{sd:.5f}", "ef_n": n}


def study_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The per-study table (STUDY_COLUMNS) of OUT.csv read as text (empty cells '')."""
    groups = {}
    for row in rows.to_dict("records"):
        groups.setdefault(_study_key(row), []).append(row)
    table = []
    for (study, grouped_by), members in groups.items():
        status = Counter(row["status"] for row in members)
        reasons = Counter(skip_category(row["error"]) for row in members if row["status"] == "skipped")
        scored = [row for row in members if row["status"] == "scored"]
        flagged = [row for row in scored if row.get("unfamiliar", "") == "1"]
        efs = [float(row["ef"]) for row in scored if row.get("unfamiliar", "") != "1"]
        table.append({"study": study, "grouped_by": grouped_by, "files": len(members), "scored": status["scored"],
                      "skipped": status["skipped"], "failed": status["failed"],
                      "skip_reasons": "; ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items())),
                      "unfamiliar": len(flagged), **_ef_cells(efs)})
    return pd.DataFrame(table, columns=STUDY_COLUMNS)


def write_studies(rows: pd.DataFrame, path) -> pd.DataFrame:
    """Write the per-study table of `rows` (OUT.csv as text) to `path`, atomically; returns it."""
    table = study_table(rows)
    with atomic_open(path, "w") as f:
        table.to_csv(f, index=False, lineterminator="\n")
    return table
