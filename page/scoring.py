"""How the page scores its uploads: predict.py's path (scoring.scorer.scored_rows: its clips, EF, familiarity
cells and CSV row) on the files of one job, with a progress bar, each row named by the upload's file name."""
import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch

from datasets.sources.dicom import DICOM_EXTENSIONS, is_dicom_file
from datasets.video import VIDEO_EXTENSIONS
from scoring.archive_clips import FAILED
from scoring.rows import CSV_COLUMNS
from scoring.scorer import PREVIEW_FRAMES, scored_rows, video_clips


class WatchedClips(torch.utils.data.Dataset):
    """scoring.scorer.video_clips' dataset, telling the progress bar what is read and how far the model is, and
    timing the reading (the rest of the scoring loop is the model)."""

    def __init__(self, dataset, names, progress):
        self.dataset, self.names, self.progress = dataset, names, progress
        self.read_s, self.clips_read, self.clips_done = 0.0, 0, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.progress((index, len(self)), desc=f"reading {self.names[index]}", unit="files")
        began = time.perf_counter()
        item = self.dataset[index]
        self.read_s += time.perf_counter() - began
        self.clips_read += len(item["starts"])
        return item

    def after_forward(self, module, inputs, output):
        self.clips_done += len(inputs[0])
        self.progress((self.clips_done, max(self.clips_read, self.clips_done)), desc="clips", unit="clips")


def accepted(path):
    """One upload is read only if it is a video or DICOM by name, or carries the DICOM marker."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS + DICOM_EXTENSIONS or is_dicom_file(path)


def score_files(scorer, paths, crop, progress):
    """(videos: one dict per file, in order, their CSV rows, timing {read, model}) through predict.py's path."""
    opt = argparse.Namespace(**{**vars(scorer.opt), "crop": crop})
    names = [Path(p).name for p in paths]
    readable = [p for p in paths if accepted(p)]
    dataset = WatchedClips(video_clips(opt, readable, preview=PREVIEW_FRAMES),
                           [Path(p).name for p in readable], progress)
    scored = {}
    handle = scorer.model.register_forward_hook(dataset.after_forward)
    began = time.perf_counter()
    try:
        for item, clip_ef, row in scored_rows(opt, scorer.model, scorer.regressor, dataset, scorer.device,
                                              scorer.amp, scorer.reference):
            scored[item["path"]] = (item, clip_ef, row)
    finally:
        handle.remove()
    timing = {"read": dataset.read_s, "model": time.perf_counter() - began - dataset.read_s}
    videos, rows = [], []
    for path, name in zip(paths, names):
        if path not in scored:
            error = f"{name}: not a video this page reads (AVI/MP4/MOV/MKV or DICOM)"
            rows.append({"file": name, "n_clips": 0, "error": error, "status": FAILED})
            videos.append({"name": name, "status": FAILED, "row": rows[-1]})
            continue
        item, clip_ef, row = scored[path]
        # the upload is known by its name; its copy's modification time is not the user's file's
        row = {**row, "file": name, "file_mtime_ns": None}
        row["error"] = row["error"].replace(path, name)  # the upload's temporary path means nothing to the user
        rows.append(row)
        # what the pictures need; the text on the page comes from the row (page.display)
        videos.append({"name": name, "path": path, "status": row["status"], "row": row, "clip_ef": clip_ef,
                       "starts": item["starts"].numpy(), "clips": item["image"], "preview": item["preview"].numpy(),
                       "preview_indexes": item["preview_indexes"].numpy(), "crop": item["crop"]})
    return videos, rows, timing


def write_csv(rows, folder):
    """predict.py's per-video CSV (same columns and number format) of the page's files."""
    path = os.path.join(folder, "coreecho_ef.csv")
    table = pd.DataFrame(rows, columns=CSV_COLUMNS).astype({"n_clips": "int64", "n_frames": "Int64"})
    table.to_csv(path, index=False, float_format="%.5f")
    return path
