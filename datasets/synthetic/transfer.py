"""Synthetic CAMUS-like and HMC-QU-like data sets, in the layouts their readers accept as downloaded.

The hearts are the beating ventricles of datasets.synthetic (an ellipse hanging from a fixed apex
at the top, EF known from the drawing by the method of disks), so a model can learn EF / MI.

- `make_synthetic_camus` (layout 'nifti' or 'mhd'): one ED -> ES half cycle per view, with the variety the
  tests need (ED stored last, every image quality, both EF keys) and, in the top-left block of every stored
  frame, its frame number as a grey level (MARKER_BASE + MARKER_STEP * k), so a reversed, flipped or transposed
  reading shows.
- `make_synthetic_hmcqu`: MJPG recordings at 25 fps and the label sheets in the published layout (.xlsx or CSV),
  names spelled as in the release, MI and non-MI patients, optionally a row without a video and the reverse.

CLI: python -m datasets.synthetic.transfer --kind camus|hmcqu --out DIR --n N --seed S
     [--layout nifti|mhd] [--frames F] [--sheet xlsx|csv] [--with-unmatched]
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import os
import shutil
import tempfile
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from utils.files.atomic import atomic_open, atomic_write_text

from .echonet import _render_video, disk_volume, write_grey_avi

CAMUS_VIEWS = ("4CH", "2CH")
QUALITIES = ("Good", "Medium", "Poor")
MARKER_BASE, MARKER_STEP = 8, 8  # level of stored frame k: 8 + 8k (<= 248 for the <= 31 frames)
MARKER_ROWS, MARKER_COLS = 6, 16
RENDER_FRAMES = 91  # enough for ED (< period <= 60) plus half a period (<= 30)
HMCQU_FPS = 25.0
HMCQU_SIZE = (160, 120)  # width, height of the recordings
HMCQU_VIEWS = ("A4C", "A2C")
HMCQU_SEGMENTS = {"A4C": ("SEG3", "SEG9", "SEG14", "SEG16", "SEG12", "SEG6"),
                  "A2C": ("SEG4", "SEG10", "SEG15", "SEG13", "SEG7", "SEG1")}
HMCQU_HEADER_MASKS = "LV Wall Ground-truth Segmentation Masks"
HMCQU_FOOTNOTE = "* indicates HMC-QU-TAU"
MASK_GLYPHS = ("\u2714", "\u2718")  # heavy check mark, heavy ballot x: a mask is given / not given


def _disk_ef(tracings: dict, t_ed: int, t_es: int) -> float:
    edv, esv = (disk_volume(tracings[t][0], tracings[t][1:]) for t in (t_ed, t_es))
    return 100 * (edv - esv) / edv


def _half_cycle(rng: np.random.Generator, ef: float) -> tuple[np.ndarray, float]:
    """uint8 frames [T, 112, 112] from ED to ES, and their disk EF."""
    frames, tracings, (t_ed, t_es) = _render_video(rng, RENDER_FRAMES, ef)
    return frames[t_ed:t_es + 1], _disk_ef(tracings, t_ed, t_es)


def _camus_view(rng: np.random.Generator, frames: np.ndarray, ed_last: bool) -> np.ndarray:
    """Stored frames [T, H, W]: resized to a size of their own, in file order, with the frame marker."""
    height, width = 112 + int(rng.integers(8, 49)), 112 + int(rng.integers(0, 33))
    stored = frames[::-1] if ed_last else frames
    out = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in stored])
    out[:, :MARKER_ROWS + 6, :MARKER_COLS + 6] = 0  # a black frame around the marker
    out[:, :MARKER_ROWS, :MARKER_COLS] = (MARKER_BASE + MARKER_STEP * np.arange(len(out)))[:, None, None]
    return out


def _write_nifti(volume: np.ndarray, path: Path) -> None:
    import nibabel

    # [T, H, W] -> [W, H, T]: x (columns) first, as in the CAMUS NIfTI release
    image = nibabel.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), np.diag([0.3, 0.3, 1.0, 1.0]))
    with atomic_open(path, "wb") as f:
        f.write(gzip.compress(image.to_bytes(), compresslevel=6, mtime=0))


def _write_mhd(volume: np.ndarray, path: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(volume)  # [T, H, W] -> size (W, H, T)
    image.SetSpacing((0.3, 0.3, 1.0))
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".tmp-mhd-"))
    try:  # the .mhd names its .raw, so both are written under their final names, then moved: .raw first
        sitk.WriteImage(image, str(tmp / path.name))
        os.replace(tmp / path.with_suffix(".raw").name, path.with_suffix(".raw"))
        os.replace(tmp / path.name, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_synthetic_camus(out_dir, n: int = 10, seed: int = 0, layout: str = "nifti",
                         ef_range: tuple[float, float] = (20.0, 80.0)) -> Path:
    """Write `n` CAMUS-like patients (both views) under out_dir; returns out_dir (a valid CAMUS root)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if layout not in ("nifti", "mhd"):
        raise ValueError(f"layout must be 'nifti' or 'mhd', got {layout!r}")
    root = Path(out_dir)
    patients_dir = root / "database_nifti" if layout == "nifti" else root
    rng = np.random.default_rng(seed)
    patient_rngs = rng.spawn(n)
    for i in range(n):
        patient_rng = patient_rngs[i]
        patient = f"patient{i + 1:04d}"
        folder = patients_dir / patient
        folder.mkdir(parents=True, exist_ok=True)
        ef_drawn = patient_rng.uniform(*ef_range)
        views = [_half_cycle(patient_rng, ef_drawn) for _ in CAMUS_VIEWS]
        ef = round(float(np.mean([view_ef for _, view_ef in views])), 2)
        ef_key = "LVef" if layout == "mhd" or i % 3 == 2 else "EF"
        sex, age = patient_rng.choice(["F", "M"]), int(patient_rng.integers(20, 90))
        for v, (view, (frames, _)) in enumerate(zip(CAMUS_VIEWS, views)):
            ed_last = (i + v) % 2 == 1
            volume = _camus_view(patient_rng, frames, ed_last)
            n_frames = len(volume)
            ed, es = (n_frames, 1) if ed_last else (1, n_frames)
            lines = [f"ED: {ed}", f"ES: {es}", f"NbFrame: {n_frames}", f"Sex: {sex}", f"Age: {age}",
                     f"ImageQuality: {QUALITIES[(i + v) % 3]}", f"{ef_key}: {ef}"]
            if layout == "nifti":
                lines.append("FrameRate: 25")
                _write_nifti(volume, folder / f"{patient}_{view}_half_sequence.nii.gz")
            else:
                _write_mhd(volume, folder / f"{patient}_{view}_sequence.mhd")
            atomic_write_text("\n".join(lines) + "\n", folder / f"Info_{view}.cfg")
    return root


def _hmcqu_frames(rng: np.random.Generator, n_frames: int, ef: float, width: int, height: int
                  ) -> tuple[np.ndarray, tuple[int, int]]:
    """The 112x112 heart scaled into a black (height, width) canvas, with a static text overlay; and the
    annotated cycle (Reference Frame, End of Cycle), 1-based: ED to the next ED, inside the video."""
    frames, _, (t_ed, t_es) = _render_video(rng, n_frames, ef)
    side = height - 20
    top, left = 10, (width - side) // 2
    canvas = np.zeros((n_frames, height, width), np.uint8)
    for t, frame in enumerate(frames):
        canvas[t, top:top + side, left:left + side] = cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)
    overlay = np.zeros((height, width), np.uint8)
    for row, text in enumerate(("HMC", "25", "fps")):
        cv2.putText(overlay, text, (1, 20 + 14 * row), cv2.FONT_HERSHEY_PLAIN, 0.7, 220, 1)
    canvas[:, overlay > 0] = overlay[overlay > 0]
    first = t_ed if t_ed + 2 < n_frames else 0  # a short video: the cycle starts at its first frame
    last = max(first + 1, min(first + 2 * (t_es - t_ed), n_frames - 2))
    return canvas, (first + 1, last + 1)


def _echo_cell(view: str, patient: str, normal: bool, k: int) -> str:
    """The ECHO cell as the published sheets spell it (the video is named so, without a trailing '*')."""
    if view == "A2C":
        return patient + ("_CH2_1", "_CH2_2*", "_CH2_1")[k % 3]  # '*': the HMC-QU-TAU subset
    tags = (" N_4CH_1", " n_4CH_3", "_4CH_1", " _4CH_1") if normal else (" _4CH_1", "_4CH_1", " _4CH_2")
    return patient + tags[k % len(tags)]


def _sheet_row(name: str, view: str, segments, cycle, mask: bool) -> list:
    return [name, *("MI" if s else "non-MI" for s in segments), *cycle, MASK_GLYPHS[0 if mask else 1]]


def hmcqu_sheet(view: str, rows: list[list]) -> list[list]:
    """The published sheet's cells: two header rows, the data rows, a blank row and the footnote."""
    width = len(HMCQU_SEGMENTS[view]) + 4
    first = ["ECHO", "LABEL"] + [""] * (width - 5) + ["One cardiac-cycle frames", "", HMCQU_HEADER_MASKS]
    second = ["", *HMCQU_SEGMENTS[view], "Reference Frame", "End of Cycle", " / ".join(MASK_GLYPHS)]
    return [first, second, *rows, [""] * width, [HMCQU_FOOTNOTE] + [""] * (width - 1)]


def _write_sheet(cells: list[list], path: Path) -> None:
    """.xlsx with the merged header cells of the release (openpyxl), or the same content saved as CSV."""
    if path.suffix == ".csv":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(cells)
        with atomic_open(path, "wb") as f:  # with a BOM, as Excel saves "CSV UTF-8"
            f.write(buffer.getvalue().encode("utf-8-sig"))
        return
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for row in cells:
        sheet.append([None if cell == "" else cell for cell in row])
    n_segments = len(cells[0]) - 4
    last_segment = openpyxl.utils.get_column_letter(1 + n_segments)
    cycle = [openpyxl.utils.get_column_letter(2 + n_segments + k) for k in range(2)]
    for cells_range in ("A1:A2", f"B1:{last_segment}1", f"{cycle[0]}1:{cycle[1]}1"):
        sheet.merge_cells(cells_range)
    buffer = io.BytesIO()
    book.save(buffer)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())


def make_synthetic_hmcqu(out_dir, n: int = 10, seed: int = 0, n_frames: int = 40, with_unmatched: bool = False,
                         views=HMCQU_VIEWS, sheet_format: str = "xlsx") -> Path:
    """Write `n` HMC-QU-like patients under out_dir (an A4C recording each, an A2C one for 3 in 4) and the
    label sheets <view>.xlsx (or .csv) in the published layout; returns out_dir."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n_frames < 4:
        raise ValueError(f"need n_frames >= 4, got {n_frames}")
    if sheet_format not in ("xlsx", "csv"):
        raise ValueError(f"sheet_format must be 'xlsx' or 'csv', got {sheet_format!r}")
    root = Path(out_dir)
    rng = np.random.default_rng(seed)
    mi = np.zeros(n, bool)
    mi[rng.permutation(n)[: (n + 1) // 2]] = True
    patient_rngs = rng.spawn(n + 1)
    rows = {view: [] for view in views}
    for i in range(n):
        patient = f"ES000{i + 1}"  # ES0001 .. ES0009, ES00010, ...: the release's numbering
        ef = patient_rngs[i].uniform(25, 45) if mi[i] else patient_rngs[i].uniform(55, 75)
        for view, view_rng in zip(HMCQU_VIEWS, patient_rngs[i].spawn(2)):
            if view not in views or (view == "A2C" and i % 4 == 3):
                continue
            segments = np.zeros(len(HMCQU_SEGMENTS[view]), int)
            if mi[i]:
                segments[view_rng.choice(len(segments), size=int(view_rng.integers(1, 3)), replace=False)] = 1
            frames, cycle = _hmcqu_frames(view_rng, n_frames, ef, *HMCQU_SIZE)
            name = _echo_cell(view, patient, not mi[i], int(np.sum(mi[:i] == mi[i])))  # spellings take turns
            folder = root / "HMC-QU" / view
            folder.mkdir(parents=True, exist_ok=True)
            write_grey_avi(frames, folder / f"{name.rstrip('*')}.avi", HMCQU_FPS)
            rows[view].append(_sheet_row(name, view, segments, cycle, mask=i % 3 != 2))
    if with_unmatched and "A4C" in views:
        rows["A4C"].append(_sheet_row("ES9999 _4CH_1", "A4C", [0] * 6, (1, n_frames), mask=False))
        frames, _ = _hmcqu_frames(patient_rngs[n], n_frames, 60.0, *HMCQU_SIZE)
        write_grey_avi(frames, root / "HMC-QU" / "A4C" / "ES9998 _4CH_1.avi", HMCQU_FPS)
    for view in views:
        _write_sheet(hmcqu_sheet(view, rows[view]), root / f"{view}.{sheet_format}")
    return root


def generated_labels(path) -> pd.DataFrame:
    """What a generated HMC-QU sheet says, read plainly with pandas (its second header row as column names),
    independent of datasets.sources.hmcqu: one row per recording, columns echo (the cell as written), mi (1 if any
    segment is 'MI'), first and last (the annotated cycle)."""
    path = Path(path)
    read = pd.read_excel if path.suffix == ".xlsx" else partial(pd.read_csv, encoding="utf-8-sig")
    table = read(path, header=1, dtype=str)
    table = table[table["Reference Frame"].notna()]  # not the blank row and the footnote
    segments = [c for c in table.columns if str(c).startswith("SEG")]
    return pd.DataFrame({"echo": table.iloc[:, 0], "mi": (table[segments] == "MI").any(axis=1).astype(int),
                         "first": table["Reference Frame"].astype(int), "last": table["End of Cycle"].astype(int)}
                        ).reset_index(drop=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datasets.synthetic.transfer",
                                     description="Write a synthetic CAMUS-like or HMC-QU-like data set.")
    parser.add_argument("--kind", required=True, choices=["camus", "hmcqu"])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=int, default=10, help="patients")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=["nifti", "mhd"], default="nifti", help="camus: file layout")
    parser.add_argument("--frames", type=int, default=40, help="hmcqu: frames per recording")
    parser.add_argument("--sheet", choices=["xlsx", "csv"], default="xlsx",
                        help="hmcqu: the label sheets as published (xlsx) or saved as CSV")
    parser.add_argument("--with-unmatched", action="store_true", help="hmcqu: add a row and a video without partner")
    args = parser.parse_args(argv)
    if args.kind == "camus":
        root = make_synthetic_camus(args.out, n=args.n, seed=args.seed, layout=args.layout)
        print(f"wrote {args.n} CAMUS-like patients ({args.layout}) to {root}")
    else:
        root = make_synthetic_hmcqu(args.out, n=args.n, seed=args.seed, n_frames=args.frames,
                                    with_unmatched=args.with_unmatched, sheet_format=args.sheet)
        print(f"wrote {args.n} HMC-QU-like patients to {root / 'HMC-QU'} (A4C, A2C) and their label sheets "
              f"{root / ('A4C.' + args.sheet)}, {root / ('A2C.' + args.sheet)}")


if __name__ == "__main__":
    main()
