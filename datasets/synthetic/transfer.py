"""Synthetic CAMUS-like and HMC-QU-like data sets, in the layouts their readers accept as downloaded.

The hearts are the beating ventricles of datasets.synthetic (an ellipse hanging from a fixed apex
at the top, EF known from the drawing by the method of disks), so a model can learn EF / MI.

CAMUS (`make_synthetic_camus`, layout 'nifti' or 'mhd'):

    nifti: OUT/database_nifti/patient0001/patient0001_4CH_half_sequence.nii.gz (+ _2CH_), Info_4CH.cfg, Info_2CH.cfg
    mhd:   OUT/patient0001/patient0001_4CH_sequence.mhd + .raw (+ _2CH_), Info_4CH.cfg, Info_2CH.cfg

Each view is one half cycle from ED to ES (14..31 frames), upscaled from 112x112 to its own size
(H 120..160, W 112..144). The NIfTI volume is stored [W, H, T] like the release (nibabel), the MHD
one through SimpleITK. Deterministic variety, for the tests: view v (0 = 4CH, 1 = 2CH) of patient
i stores ED LAST (cfg ED = NbFrame, ES = 1) when i + v is odd; its ImageQuality is
Good / Medium / Poor for (i + v) % 3 = 0 / 1 / 2; the EF key is 'LVef' when i % 3 == 2 (NIfTI) or
always (MHD, the older release), else 'EF'. The cfg EF is the mean of the two views' disk EFs
(CAMUS gives one biplane EF per patient). A marker encodes the stored frame number k (0-based,
in file order): the top-left block, rows 0..5 and columns 0..15 of the stored frame, has the grey
level MARKER_BASE + MARKER_STEP * k; the rest of the top-left corner is black, so a flipped or
transposed reading is visible too.

HMC-QU (`make_synthetic_hmcqu`): OUT/HMC-QU/A4C/ES0001 _4CH_1.avi ... (MJPG, 25 fps, 160x120:
the sector in the middle, black borders, a static text overlay in the left border) and
OUT/A4C.csv with columns ECHO, SEG1..SEG7, Reference Frame, End of Cycle. About half the
recordings are MI (one or two segments = 1, EF 25..45), the others have all segments 0 (EF 55..75).
The ECHO names are deliberately odd, cycling over: exact, lower case, with '.AVI', spaces moved,
surrounding spaces and no space. `with_unmatched` adds a row without a video (ES9999) and a
video without a row (ES9998).

CLI: python -m datasets.synthetic.transfer --kind camus|hmcqu --out DIR --n N --seed S
     [--layout nifti|mhd] [--frames F] [--with-unmatched]
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import tempfile
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
N_SEGMENTS = 7
HMCQU_FPS = 25.0


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


def _hmcqu_frames(rng: np.random.Generator, n_frames: int, ef: float, width: int, height: int) -> np.ndarray:
    """The 112x112 heart scaled into a black (height, width) canvas, with a static text overlay."""
    frames, _, _ = _render_video(rng, n_frames, ef)
    side = height - 20
    top, left = 10, (width - side) // 2
    canvas = np.zeros((n_frames, height, width), np.uint8)
    for t, frame in enumerate(frames):
        canvas[t, top:top + side, left:left + side] = cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)
    overlay = np.zeros((height, width), np.uint8)
    for row, text in enumerate(("HMC", "25", "fps")):
        cv2.putText(overlay, text, (1, 20 + 14 * row), cv2.FONT_HERSHEY_PLAIN, 0.7, 220, 1)
    canvas[:, overlay > 0] = overlay[overlay > 0]
    return canvas


def _odd_name(stem: str, i: int) -> str:
    """The ECHO cell for recording `stem`, spelled in one of five ways a real sheet might use."""
    compact = stem.replace(" ", "")
    return (stem, stem.lower(), stem + ".AVI", compact[:2] + " " + compact[2:], f"  {compact} ")[i % 5]


def make_synthetic_hmcqu(out_dir, n: int = 10, seed: int = 0, n_frames: int = 40, width: int = 160,
                         height: int = 120, with_unmatched: bool = False) -> Path:
    """Write `n` HMC-QU-like A4C recordings and A4C.csv under out_dir; returns out_dir."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n_frames < 2 or height < 40 or width < height - 20:
        raise ValueError(f"need n_frames >= 2, height >= 40 and width >= height - 20, "
                         f"got {n_frames}, {height}, {width}")
    root = Path(out_dir)
    videos = root / "HMC-QU" / "A4C"
    videos.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mi = np.zeros(n, bool)
    mi[rng.permutation(n)[: (n + 1) // 2]] = True
    recording_rngs = rng.spawn(n + 1)
    rows = []
    for i in range(n):
        recording_rng = recording_rngs[i]
        stem = f"ES{i + 1:04d} _4CH_1"
        segments = np.zeros(N_SEGMENTS, int)
        if mi[i]:
            segments[recording_rng.choice(N_SEGMENTS, size=int(recording_rng.integers(1, 3)), replace=False)] = 1
        ef = recording_rng.uniform(25, 45) if mi[i] else recording_rng.uniform(55, 75)
        write_grey_avi(_hmcqu_frames(recording_rng, n_frames, ef, width, height), videos / f"{stem}.avi", HMCQU_FPS)
        rows.append({"ECHO": _odd_name(stem, i), **{f"SEG{k + 1}": int(s) for k, s in enumerate(segments)},
                     "Reference Frame": 1, "End of Cycle": n_frames})
    if with_unmatched:
        rows.append({"ECHO": "ES9999 _4CH_1", **{f"SEG{k + 1}": 0 for k in range(N_SEGMENTS)},
                     "Reference Frame": 1, "End of Cycle": n_frames})
        frames = _hmcqu_frames(recording_rngs[n], n_frames, 60.0, width, height)
        write_grey_avi(frames, videos / "ES9998 _4CH_1.avi", HMCQU_FPS)
    with atomic_open(root / "A4C.csv", "w") as f:
        pd.DataFrame(rows).to_csv(f, index=False)
    return root


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datasets.synthetic.transfer",
                                     description="Write a synthetic CAMUS-like or HMC-QU-like data set.")
    parser.add_argument("--kind", required=True, choices=["camus", "hmcqu"])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=int, default=10, help="patients (camus) or recordings (hmcqu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=["nifti", "mhd"], default="nifti", help="camus: file layout")
    parser.add_argument("--frames", type=int, default=40, help="hmcqu: frames per recording")
    parser.add_argument("--with-unmatched", action="store_true", help="hmcqu: add a row and a video without partner")
    args = parser.parse_args(argv)
    if args.kind == "camus":
        root = make_synthetic_camus(args.out, n=args.n, seed=args.seed, layout=args.layout)
        print(f"wrote {args.n} CAMUS-like patients ({args.layout}) to {root}")
    else:
        root = make_synthetic_hmcqu(args.out, n=args.n, seed=args.seed, n_frames=args.frames,
                                    with_unmatched=args.with_unmatched)
        print(f"wrote {args.n} HMC-QU-like recordings to {root / 'HMC-QU' / 'A4C'} and labels to {root / 'A4C.csv'}")


if __name__ == "__main__":
    main()
