"""Synthetic EchoNet-Dynamic-format data: beating-heart-like videos with EF known from the drawing.

Each video (112x112 MJPG AVI, 3 identical grey channels, 50 fps, 100-200 frames) shows a speckled
dark ultrasound sector with a left ventricle drawn as a dark blood pool (an ellipse hanging from a
fixed apex) inside a bright myocardial wall, plus fainter right ventricle and atria. The LV axes
move between their end-diastolic (ED) and end-systolic (ES) values with a random heart rate and
phase: c(t) = (1 - cos(2 pi (t - t_ed) / P)) / 2 goes from 0 (ED, frame t_ed) to 1 (ES, frame
t_ed + P / 2), P an even number of frames. For a drawn EF the volume ratio r = 1 - EF / 100 is
split between the axes (long axis x r^0.2, short axis x r^0.4, so a^2 b scales by r), hence the
pool's area change within a clip shows the EF.

VolumeTracings.csv holds the ES and ED tracings (long axis and 20 chords); ESV, EDV and EF follow from them by
the single-plane method of disks (in mL for a pixel of PIXEL_MM mm), so the labels follow from the drawing.

CLI: python -m datasets.synthetic --out DIR --n 100 --seed 0
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from utils.files.atomic import atomic_open

SIZE = 112
PIXEL_MM = 1.75  # makes typical volumes look like mL of an adult heart (EDV ~ 100 mL)
N_DISKS = 20
PHASE_LEVELS = 32  # shapes are rendered at c = k / 32 and shared by the frames of that phase
MAX_HALF_PERIOD = 30  # heartbeats of 26..60 frames (see _render_video)
MIN_FRAMES = 3 * MAX_HALF_PERIOD  # the traced ED (first beat) and ES (half a beat later) lie inside the video
_GRID_Y, _GRID_X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


def disk_volume(axis: np.ndarray, chords: np.ndarray) -> float:
    """Method of disks: axis = [x1, y1, x2, y2] (long axis), chords [20, 4] -> volume in px^3."""
    length = np.hypot(axis[2] - axis[0], axis[3] - axis[1])
    diameters = np.hypot(chords[:, 2] - chords[:, 0], chords[:, 3] - chords[:, 1])
    return float(np.sum(np.pi * (diameters / 2) ** 2 * length / len(chords)))


def _tracing(apex, direction, a: float, b: float) -> np.ndarray:
    """Rows [21, 4]: long axis apex -> base, then the 20 chords of the ellipse (semi-axes a, b)."""
    normal = np.array([direction[1], -direction[0]])
    rows = [np.concatenate([apex, apex + 2 * b * direction])]
    for i in range(N_DISKS):
        s = (i + 0.5) / N_DISKS * 2 * b  # distance from the apex
        half = a * np.sqrt(1 - ((s - b) / b) ** 2)
        mid = apex + s * direction
        rows.append(np.concatenate([mid + half * normal, mid - half * normal]))
    return np.round(np.array(rows), 4)


def _ellipse_masks(apex, direction, a, b, wall):
    """Soft masks [levels, H, W] of the pool (semi-axes a, b) and of pool + wall (a + wall, b + wall).

    a, b, wall: arrays [levels]; the ellipses share their centre apex + b * direction.
    """
    along = (_GRID_X - apex[0]) * direction[0] + (_GRID_Y - apex[1]) * direction[1]
    across = (_GRID_X - apex[0]) * direction[1] - (_GRID_Y - apex[1]) * direction[0]
    a, b, wall = (np.asarray(v, np.float32)[:, None, None] for v in (a, b, wall))
    along = along[None] - b
    masks = []
    for ra, rb in ((a, b), (a + wall, b + wall)):
        rho = np.sqrt((across[None] / ra) ** 2 + (along / rb) ** 2)
        masks.append(np.clip(0.5 - (rho - 1) * ra, 0, 1))  # ~1 px anti-aliased edge
    return masks


def _render_video(rng: np.random.Generator, n_frames: int, ef: float):
    """uint8 frames [n_frames, 112, 112], tracings {frame: rows [21, 4]}, (ED frame, ES frame)."""
    period = 2 * int(rng.integers(13, MAX_HALF_PERIOD + 1))  # 26..60 frames: 50..115 bpm at 50 fps
    t_ed = int(rng.integers(0, period))  # ED in the first beat, ES half a beat later
    t_es = t_ed + period // 2
    level = np.rint((1 - np.cos(2 * np.pi * (np.arange(n_frames) - t_ed) / period)) / 2 * PHASE_LEVELS).astype(int)
    c = np.arange(PHASE_LEVELS + 1) / PHASE_LEVELS  # contraction at each rendered level

    # static speckled tissue inside the sector
    angle = np.arctan2(_GRID_X - SIZE / 2, _GRID_Y - 1)
    sector = (np.abs(angle) < np.radians(37)) & (np.hypot(_GRID_X - SIZE / 2, _GRID_Y - 1) < 108)
    speckle = cv2.blur(rng.rayleigh(1.0, (SIZE, SIZE)).astype(np.float32), (2, 2)) / 1.25
    tissue = np.full((SIZE, SIZE), 22.0 + rng.uniform(-6, 6), np.float32)
    image = np.broadcast_to(tissue, (PHASE_LEVELS + 1, SIZE, SIZE)).copy()

    def draw(apex, tilt, a, b, wall, wall_level, pool_level=4.0):
        nonlocal image
        direction = np.array([np.sin(tilt), np.cos(tilt)])
        pool, outer = _ellipse_masks(apex, direction, a, b, wall)
        image = image * (1 - outer) + wall_level * (outer - pool) + pool_level * pool

    apex = np.array([60 + rng.uniform(-3, 3), 13 + rng.uniform(-2, 3)])
    tilt = np.radians(rng.uniform(-12, 8))
    b_ed, a_ed = rng.uniform(28, 34), rng.uniform(11, 14)
    ratio = 1 - ef / 100
    b_es, a_es = b_ed * ratio ** 0.2, a_ed * ratio ** 0.4
    wall = rng.uniform(3.5, 5.0)
    # faint atria (largest at ES) and right ventricle (in phase with the LV), drawn first
    base = apex + 2 * b_ed * np.array([np.sin(tilt), np.cos(tilt)])
    for dx, size in ((0.0, rng.uniform(10, 13)), (-24.0, rng.uniform(8, 11))):
        atrium = size * (1 + rng.uniform(0.1, 0.25) * c)
        draw(base + [dx + rng.uniform(-2, 2), 4], tilt, atrium, atrium * 0.9, np.full_like(c, 2.5),
             rng.uniform(70, 100))
    rv_scale = 1 - rng.uniform(0.05, 0.25) * c
    draw(apex + [-22 + rng.uniform(-3, 3), 8], tilt + np.radians(rng.uniform(5, 15)),
         rng.uniform(7, 10) * rv_scale, rng.uniform(22, 27) * rv_scale, np.full_like(c, 3.0), rng.uniform(90, 120))
    a, b = a_ed + (a_es - a_ed) * c, b_ed + (b_es - b_ed) * c
    draw(apex, tilt, a, b, wall * (1 + 0.5 * c), rng.uniform(150, 190))

    levels = np.where(sector, image * speckle, 0)[level]  # [n_frames, H, W]
    noise = rng.normal(0, 4, (8, SIZE, SIZE)).astype(np.float32)  # a small bank, frames pick one
    frames = np.clip(levels + sector * noise[rng.integers(0, 8, n_frames)], 0, 255).round().astype(np.uint8)

    direction = np.array([np.sin(tilt), np.cos(tilt)])
    tracings = {t_es: _tracing(apex, direction, a_es, b_es), t_ed: _tracing(apex, direction, a_ed, b_ed)}
    return frames, tracings, (t_ed, t_es)


def write_grey_avi(frames: np.ndarray, path: Path, fps: float) -> None:
    """Grey uint8 frames [T, H, W] -> MJPG AVI at `path` (written to a temporary name, then renamed)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".avi")  # writer needs .avi
    os.close(fd)
    try:
        height, width = frames.shape[1:3]
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"cannot open an MJPG video writer for {tmp}")
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        writer.release()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_open(path, "w") as f:
        table.to_csv(f, index=False)


def make_synthetic_echonet(out_dir, n: int = 100, seed: int = 0, min_frames: int = 100, max_frames: int = 200,
                           fps: float = 50.0, ef_range: tuple[float, float] = (20.0, 80.0)) -> Path:
    """Write an EchoNet-format dataset of `n` synthetic videos under `out_dir`; returns its path.

    Splits TRAIN / VAL / TEST ~ 60 / 20 / 20 % with at least 2 videos each (so n >= 6).
    The same arguments give the same files.
    """
    if n < 6:
        raise ValueError(f"n must be >= 6 (2 videos per split), got {n}")
    if not MIN_FRAMES <= min_frames <= max_frames:
        raise ValueError(f"need {MIN_FRAMES} <= min_frames <= max_frames (the traced ED and ES frames lie in "
                         f"the first {MIN_FRAMES} frames), "
                         f"got {min_frames}, {max_frames}")
    root = Path(out_dir)
    (root / "Videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_val = n_test = max(2, round(0.2 * n))
    splits = np.array(["TRAIN"] * (n - n_val - n_test) + ["VAL"] * n_val + ["TEST"] * n_test)[rng.permutation(n)]
    video_seeds = rng.spawn(n)

    rows, tracing_rows = [], []
    for i in range(n):
        video_rng = video_seeds[i]
        name = f"0XSYN{seed:04d}{i:06d}"
        n_frames = int(video_rng.integers(min_frames, max_frames + 1))
        ef_drawn = video_rng.uniform(*ef_range)
        frames, tracings, (t_ed, t_es) = _render_video(video_rng, n_frames, ef_drawn)
        write_grey_avi(frames, root / "Videos" / f"{name}.avi", fps)
        volume_mm3 = {t: disk_volume(r[0], r[1:]) * PIXEL_MM ** 3 for t, r in tracings.items()}
        esv, edv = volume_mm3[t_es] / 1000, volume_mm3[t_ed] / 1000
        rows.append({"FileName": name, "EF": round(100 * (edv - esv) / edv, 2), "ESV": round(esv, 2),
                     "EDV": round(edv, 2), "FrameHeight": SIZE, "FrameWidth": SIZE, "FPS": fps,
                     "NumberOfFrames": n_frames, "Split": splits[i]})
        for t in (t_es, t_ed):  # EchoNet convention: ES (small) rows first, ED (large) last
            for x1, y1, x2, y2 in tracings[t]:
                tracing_rows.append((f"{name}.avi", x1, y1, x2, y2, t))

    tracings = pd.DataFrame(tracing_rows, columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"])
    _write_csv(tracings, root / "VolumeTracings.csv")
    _write_csv(pd.DataFrame(rows), root / "FileList.csv")
    return root


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datasets.synthetic",
                                     description="Write a synthetic EchoNet-Dynamic-format dataset.")
    parser.add_argument("--out", required=True, help="output folder (FileList.csv, VolumeTracings.csv, Videos/)")
    parser.add_argument("--n", type=int, default=100, help="number of videos (>= 6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-frames", type=int, default=100)
    parser.add_argument("--max-frames", type=int, default=200)
    args = parser.parse_args(argv)
    root = make_synthetic_echonet(args.out, n=args.n, seed=args.seed, min_frames=args.min_frames,
                                  max_frames=args.max_frames)
    table = pd.read_csv(root / "FileList.csv")
    counts = table["Split"].value_counts().to_dict()
    print(f"wrote {len(table)} videos to {root} ({counts}); EF {table['EF'].min():.1f}..{table['EF'].max():.1f}")


if __name__ == "__main__":
    main()
