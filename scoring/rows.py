"""The rows predict.py writes and the web page offers: one per file (`CSV_COLUMNS`, `csv_row`) and one per clip
(`CLIP_COLUMNS`)."""
from .archive_clips import SCORED
from .familiarity import COLUMNS as FAMILIARITY_COLUMNS
from .study_objects import IDENTITY_COLUMNS

CSV_COLUMNS = ["file", "ef", "ef_std", *FAMILIARITY_COLUMNS, "n_clips", "n_frames", "fps", "fps_used", "crop",
               "crop_source", "error", "notes", "status", *IDENTITY_COLUMNS, "file_size", "file_mtime_ns"]
CLIP_COLUMNS = ["file", "clip_start", "ef"]


def csv_row(item, clip_ef):
    """The row of an ArchiveClips item (CSV_COLUMNS; a column left out is empty). `error` says why a skipped or
    failed file was not scored; `status` which of the two it was; `crop_source` where the crop came from
    ('region', 'auto', 'none', 'given'; also on a loop skipped for colour flow in that crop)."""
    status = item["status"]
    row = {"file": item["path"], "n_clips": 0, "crop_source": item["crop_source"], "error": item["error"],
           "status": status, **item["identity"],
           "file_size": item["file_size"], "file_mtime_ns": item["file_mtime_ns"]}
    if status != SCORED:
        return row
    fps, used = item["fps"], item["fps_used"]
    row.update(ef=clip_ef.mean(), ef_std=clip_ef.std(), n_clips=len(clip_ef), n_frames=item["n_frames"],
               fps=f"{fps:g}" if fps else "", fps_used=f"{used:g}" if used else "", crop=item["crop"],
               notes="; ".join(item["notes"]))
    return row
