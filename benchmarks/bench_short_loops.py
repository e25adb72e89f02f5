"""Short loops, measured: the EF error of the three ways to score a video shorter than one clip
(scoring/short_loops.py: pad = the released zero-padding, repeat = the loop played again, fit = a shorter
sampling period) on EchoNet-format videos cut short.

For every video of a split (FileList.csv + Videos/, 50 fps): the reference is the model's EF over the whole
video (every grid clip, as predict.py scores a long video); then windows of each --seconds (at 50 fps) are cut
at each --offsets (a fraction of the room left: 0 = from the first frame, 0.5 = from the middle) and scored with
each policy. Printed per window length and policy: MAE against the label, the mean |EF(window) - EF(whole
video)| (agreement with the whole video) and the mean signed error against the label (bias).

    python benchmarks/bench_short_loops.py --weights save/demo/stage2/best.pth --data_folder data/synthetic_echonet
        [--frames 36 --frequency 4] [--seconds 1.0 1.5 2.0] [--samples ../shared/data/echonet_samples]

--model/--frames/--frequency default to what the checkpoint says (models.settings), else 36 x 4; --samples (real EchoNet videos) defaults to ../shared/data/echonet_samples when it exists.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datasets.clips import clip_grid, cut_clips, default_clip_stride  # noqa: E402
from datasets.video import decode_video  # noqa: E402
from models import build_model, read_weights, require_kind  # noqa: E402
from models.settings import fill_options  # noqa: E402
from scoring.short_loops import POLICIES, short_loop_plan  # noqa: E402
from utils.evaluation.inference import embed_clips  # noqa: E402

FPS = 50
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "echonet_samples"


def test_videos(folder: Path, split: str, limit: int | None):
    """(path, EF label) of the split's videos (every video when `split` is None), in FileList order."""
    table = pd.read_csv(folder / "FileList.csv")
    if split:
        table = table[table["Split"].astype(str).str.upper() == split.upper()]
    names = [n if str(n).lower().endswith(".avi") else f"{n}.avi" for n in table["FileName"]]
    pairs = [(folder / "Videos" / name, float(ef)) for name, ef in zip(names, table["EF"])]
    return pairs[:limit] if limit else pairs


@torch.no_grad()
def video_ef(model, regressor, video, frames, frequency, policy):
    """Mean EF over the grid clips of `video` cut as `policy` says (predict.py's way)."""
    stride = default_clip_stride(frames, frequency)
    video, step, stride, _ = short_loop_plan(video, frames, frequency, stride, policy)
    clips = cut_clips(video, clip_grid(len(video), frames, step, stride), frames, step)
    return float(regressor(embed_clips(model, clips, torch.device("cpu"))).mean())


def windows(video, n, offsets):
    room = len(video) - n
    return [video[int(round(o * room)):int(round(o * room)) + n] for o in offsets if room >= 0]


def measure(model, regressor, pairs, opt):
    """{(seconds, policy): (errors vs label, differences vs the whole video)} and the whole-video errors."""
    results, whole_errors = {}, []
    for path, label in pairs:
        video = decode_video(path)
        whole = video_ef(model, regressor, video, opt.frames, opt.frequency, "pad")
        whole_errors.append(whole - label)
        for seconds in opt.seconds:
            for window in windows(video, int(round(seconds * FPS)), opt.offsets):
                for policy in POLICIES:
                    ef = video_ef(model, regressor, window, opt.frames, opt.frequency, policy)
                    errors, differences = results.setdefault((seconds, policy), ([], []))
                    errors.append(ef - label)
                    differences.append(ef - whole)
    return results, np.array(whole_errors)


def report(title, results, whole_errors, opt):
    span = opt.frames * opt.frequency
    print(f"\n{title}: whole video MAE {np.abs(whole_errors).mean():.2f} (bias {whole_errors.mean():+.2f}), "
          f"{len(whole_errors)} videos")
    print(f"{'window':>8s} {'frames':>6s} {'short':>5s} | " + " ".join(f"{'MAE ' + p:>11s}" for p in POLICIES)
          + " | " + " ".join(f"{'|d| ' + p:>11s}" for p in POLICIES) + " | "
          + " ".join(f"{'bias ' + p:>11s}" for p in POLICIES))
    for seconds in opt.seconds:
        n = int(round(seconds * FPS))
        cells = [results.get((seconds, p), ([np.nan], [np.nan])) for p in POLICIES]
        mae = " ".join(f"{np.abs(e).mean():11.2f}" for e, _ in cells)
        diff = " ".join(f"{np.abs(d).mean():11.2f}" for _, d in cells)
        bias = " ".join(f"{np.mean(e):+11.2f}" for e, _ in cells)
        print(f"{seconds:7.2f}s {n:6d} {'yes' if n < span else 'no':>5s} | {mae} | {diff} | {bias}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="a CoReEcho checkpoint (the demo's stage2/best.pth)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--data_folder", required=True, help="EchoNet-format folder (FileList.csv, Videos/)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--frequency", type=int, default=None)
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    parser.add_argument("--offsets", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--samples", default=str(SAMPLES) if (SAMPLES / "FileList.csv").exists() else None)
    parser.add_argument("--max_videos", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    opt = parser.parse_args()
    if opt.threads:
        torch.set_num_threads(opt.threads)
    weights = read_weights(opt.weights)
    require_kind(weights, ("coreecho",))
    sources = fill_options(opt, weights)  # model and clip shape from the checkpoint unless given
    model, regressor, _ = build_model(opt.model, weights)
    model, regressor = model.eval(), regressor.eval()
    span = opt.frames * opt.frequency
    shape = f" (clip shape from the {sources['frames']})"
    print(f"CPU, torch {torch.__version__} ({torch.get_num_threads()} threads); {opt.model} from {opt.weights}{shape}; "
          f"scored with "
          f"{opt.frames}x{opt.frequency} clips ({span} frames = {span / FPS:.2f} s at {FPS} fps); windows at offsets "
          f"{', '.join(f'{o:g}' for o in opt.offsets)}")
    print("MAE = mean |EF - label|; |d| = mean |EF(window) - EF(whole video)|; bias = mean EF - label")
    sets = [(f"{opt.split} split of {opt.data_folder}", Path(opt.data_folder), opt.split)]
    if opt.samples:
        sets.append((f"real EchoNet samples ({opt.samples}, every split)", Path(opt.samples), None))
    for title, folder, split in sets:
        start = time.perf_counter()
        results, whole = measure(model, regressor, test_videos(folder, split, opt.max_videos), opt)
        report(title, results, whole, opt)
        print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
