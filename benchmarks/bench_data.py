"""Samples/s of the stage-1 two-view sample (frames 36, period 4, augmentation) on one CPU thread.

(a) released-style baseline: per view, decode the whole video (read + BGR->RGB), convert it all
    to float32, pad / sample the clip, pad-and-crop each frame, normalise;
(b) EchoNetRNC without cache: one partial decode for both views, uint8 until the clip is cut;
(c) EchoNetRNC with the decoded-video cache (filled before timing; the fill time is printed).
Then the cache's bookkeeping at EchoNet scale: the time per cache miss spent finding stale entries in a
folder of 20,000 entries, a scan of the folder at every miss vs datasets.cache (one listing per process).
Uses /work/shared/data/echonet_samples (the 9 real videos) when present, else synthetic videos.
Variants are timed in interleaved rounds over the same videos to share the machine's noise.

    python benchmarks/bench_data.py [--rounds 5] [--quick] [--root DIR]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datasets import EchoNetRNC, MEAN, STD, make_synthetic_echonet  # noqa: E402

FRAMES, FREQUENCY = 36, 4
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "echonet_samples"


def released_style_view(path: str, rng: np.random.Generator) -> np.ndarray:
    """One augmented view the way the released loader makes it (written from its description)."""
    capture = cv2.VideoCapture(path)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    video = np.zeros((count, 112, 112, 3), np.uint8)
    for i in range(count):
        ok, frame = capture.read()
        if not ok:
            raise ValueError(f"frame {i} of {path}")
        video[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    video = video.transpose(3, 0, 1, 2).astype(np.float32)  # whole video to float
    c, f, h, w = video.shape
    if f < FRAMES * FREQUENCY:
        video = np.concatenate([video, np.zeros((c, FRAMES * FREQUENCY - f, h, w), np.float32)], axis=1)
        f = video.shape[1]
    start = rng.choice(f - (FRAMES - 1) * FREQUENCY)
    clip = video[:, start + FREQUENCY * np.arange(FRAMES)]
    frames = clip.transpose(1, 2, 3, 0).astype(np.uint8)  # per-frame augmentation, as with albumentations
    top, left = rng.integers(0, 13, 2)
    frames = np.stack([cv2.copyMakeBorder(x, 6, 6, 6, 6, cv2.BORDER_CONSTANT, value=0)[top:top + 112, left:left + 112]
                       for x in frames])
    clip = frames.astype(np.float32).transpose(3, 0, 1, 2)
    clip -= MEAN.reshape(3, 1, 1, 1)
    clip /= STD.reshape(3, 1, 1, 1)
    return clip


def stale_scan_per_miss(entries: int = 20000, misses: int = 200) -> tuple[float, float]:
    """Seconds per cache miss spent on stale entries: (a folder scan per miss, datasets.cache)."""
    import os
    import re

    from datasets import cache

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(entries):
            (folder / f"0X{i:08d}.1000.{i}.npy").touch()

        def scan(stem, key):  # what each miss did before: list the folder, match every name
            pattern = re.compile(rf"{re.escape(stem)}\.\d+\.\d+(\.colour)?\.npy")
            for name in os.listdir(folder):
                if pattern.fullmatch(name) and not name.startswith(key + "."):
                    os.remove(folder / name)

        times = []
        for remove in (scan, lambda stem, key: cache._remove_stale(folder, stem, key)):
            start = time.perf_counter()
            for i in range(misses):
                remove(f"0X{i:08d}", f"0X{i:08d}.1000.{i}")
            times.append((time.perf_counter() - start) / misses)
        return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="EchoNet-format folder (default: real samples, else synthetic)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    torch.set_num_threads(1)  # as in a DataLoader worker
    cv2.setNumThreads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else SAMPLES
        source = f"{root}"
        if not (root / "FileList.csv").exists():
            root = make_synthetic_echonet(Path(tmp) / "synthetic", n=12, seed=0)
            source = "synthetic videos (real samples absent)"
        plain = EchoNetRNC(root, "all", FRAMES, FREQUENCY, aug=True)
        cached = EchoNetRNC(root, "all", FRAMES, FREQUENCY, aug=True, cache_dir=Path(tmp) / "cache")
        paths = [str(plain.video_path(i)) for i in range(len(plain))]
        rng = np.random.default_rng(0)

        t = time.perf_counter()
        for i in range(len(cached)):
            cached[i]
        fill = time.perf_counter() - t

        variants = {
            "(a) released-style, 2 full decodes": lambda i: (released_style_view(paths[i], rng),
                                                             released_style_view(paths[i], rng)),
            "(b) EchoNetRNC, no cache": plain.__getitem__,
            "(c) EchoNetRNC, cache": cached.__getitem__,
        }
        seconds = dict.fromkeys(variants, 0.0)
        for name, fn in variants.items():  # warm-up
            fn(0)
        for _ in range(rounds):
            for name, fn in variants.items():
                t = time.perf_counter()
                for i in range(len(paths)):
                    fn(i)
                seconds[name] += time.perf_counter() - t

    n = rounds * len(paths)
    frames = [cv2.VideoCapture(p).get(cv2.CAP_PROP_FRAME_COUNT) for p in paths]
    print(f"data: {source}: {len(paths)} videos, {int(min(frames))}-{int(max(frames))} frames; "
          f"{rounds} rounds, {n} two-view samples per variant; torch/cv2 threads = 1")
    base = n / seconds["(a) released-style, 2 full decodes"]
    for name in variants:
        rate = n / seconds[name]
        print(f"{name:38s} {rate:7.1f} samples/s  {1000 / rate:6.1f} ms/sample  x{rate / base:5.2f}")
    print(f"cache fill (first decode + write of every video): {1000 * fill / len(paths):.1f} ms/video")
    scan, listed = stale_scan_per_miss()
    print(f"stale-entry check per cache miss, 20,000 entries: folder scan {1000 * scan:.2f} ms, datasets.cache "
          f"{1000 * listed:.3f} ms (x{scan / listed:.0f})")


if __name__ == "__main__":
    main()
