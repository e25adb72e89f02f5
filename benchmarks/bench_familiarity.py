"""How well the familiarity distance (scoring.familiarity) tells the demo's own test videos from videos the model
never saw like them, and what it costs beside the model.

    python benchmarks/bench_familiarity.py [--pretrained_weights save/demo/stage2/best.pth] \
        [--data_folder data/synthetic_echonet] [--work /tmp/bench_familiarity]

In distribution: the test split of --data_folder. Against it (AUROC of the distance, 1 = every outsider farther
than every test video): real EchoNet videos (../shared, when present), two-chamber loops (generated HMC-QU A2C
and the real HMC-QU GIF), noise and blank loops, colour-flow loops (test videos with a moving red/blue Doppler-like
patch). Makes the reference beside the checkpoint first when it is missing. Scored as predict.py scores a file.
"""
import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datasets.synthetic.echonet import write_grey_avi  # noqa: E402
from datasets.synthetic.transfer import make_synthetic_hmcqu  # noqa: E402
from datasets.video import decode_video  # noqa: E402
from scoring import archive_clips  # noqa: E402
from scoring.archive_clips import SCORED  # noqa: E402
from scoring.familiarity import Reference, find_reference, reference_path  # noqa: E402
from scoring.reference import make_reference, parse_option, split_videos  # noqa: E402
from scoring.scorer import embed_videos, load_scorer, video_clips  # noqa: E402
from utils.script.log import setup_logger  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CPU = torch.device("cpu")


def write_colour_avi(frames, path, fps=50.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, frames.shape[2:0:-1])
    for frame in frames:
        writer.write(frame)
    writer.release()


def outsiders(work, test_paths, rng):
    """{set name: [paths]} of the videos the model never saw like them."""
    sets = {"echonet_real": sorted(map(str, (SHARED / "echonet_samples" / "Videos").glob("*.avi")))}
    hmcqu = make_synthetic_hmcqu(work / "hmcqu", n=12, seed=1, sheet_format="csv")
    gif = SHARED / "real_ultrasound" / "ES0001_CH2_1.gif"
    sets["two_chamber_generated"] = sorted(map(str, (hmcqu / "HMC-QU" / "A2C").glob("*.avi")))
    sets["two_chamber_real_gif"] = [str(gif)] * gif.exists()
    blank = work / "noise_blank"
    blank.mkdir(exist_ok=True)
    for k in range(4):
        noise = rng.integers(0, 256, (150, 112, 112), dtype=np.uint8)
        write_grey_avi(noise, blank / f"noise{k}.avi", 50.0)
        blurred = np.stack([cv2.GaussianBlur(frame, (9, 9), 0) for frame in noise])  # speckle-like
        write_grey_avi(blurred, blank / f"blurred_noise{k}.avi", 50.0)
        write_grey_avi(np.full((150, 112, 112), 64 * k, np.uint8), blank / f"blank{k}.avi", 50.0)
    sets["noise_blank"] = sorted(map(str, blank.glob("*.avi")))
    flow = work / "colour_flow"
    flow.mkdir(exist_ok=True)
    yy, xx = np.mgrid[:112, :112]
    for path in test_paths[:12]:  # a pulsing colour patch over the ventricle: red towards, blue away
        frames = decode_video(path)[..., ::-1].astype(np.float32)  # RGB -> BGR for OpenCV
        for t, frame in enumerate(frames):
            patch = ((yy - 50) ** 2 / 30 ** 2 + (xx - 56) ** 2 / 18 ** 2) < 1
            speed = np.sin(2 * np.pi * t / 30 + yy / 9.0)
            frame[patch & (speed > 0), :] = [40, 40, 255]  # BGR: red
            frame[patch & (speed <= 0), :] = [255, 60, 30]  # blue
        write_colour_avi(frames.clip(0, 255).astype(np.uint8), flow / Path(path).name)
    sets["colour_flow"] = sorted(map(str, flow.glob("*.avi")))
    return {name: paths for name, paths in sets.items() if paths}


def familiarity(opt, scorer, reference, paths):
    """(distance, unfamiliar, ef_knn per scored file, model seconds per file, distance seconds per file)."""
    model, regressor = scorer
    rows, model_s, distance_s = [], 0.0, 0.0
    began = time.perf_counter()
    for item, _, embeddings in embed_videos(opt, model, regressor, video_clips(opt, paths), CPU, None):
        model_s += time.perf_counter() - began
        if item["status"] == SCORED:
            start = time.perf_counter()
            columns = reference.columns(embeddings)
            distance_s += time.perf_counter() - start
            rows.append((columns["distance"], columns["unfamiliar"], columns["ef_knn"]))
        began = time.perf_counter()
    return np.array(rows, dtype=np.float64).reshape(-1, 3), model_s / len(paths), distance_s / max(1, len(rows))


def auroc(inside, outside):
    """P(an outsider lies farther than an inside video), ties counting half (Mann-Whitney)."""
    inside, outside = np.asarray(inside)[:, None], np.asarray(outside)[None, :]
    return float(((outside > inside).sum() + 0.5 * (outside == inside).sum()) / (inside.size * outside.size))


def main():
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--pretrained_weights", default="save/demo/stage2/best.pth")
    args.add_argument("--data_folder", default="data/synthetic_echonet")
    args.add_argument("--work", default="/tmp/bench_familiarity")
    args.add_argument("--cache_dir", default="data/synthetic_echonet_cache")
    known = args.parse_args()
    opt = parse_option(["--pretrained_weights", known.pretrained_weights, "--data_folder", known.data_folder,
                        "--model", "uniformer_tiny", "--frames", "16", "--frequency", "4", "--device", "cpu",
                        "--num_workers", "0", "--cache_dir", known.cache_dir])
    torch.set_num_threads(1)  # modest: the machine is shared
    log = setup_logger(None)
    if not Path(reference_path(opt.pretrained_weights)).exists():
        start = time.perf_counter()
        make_reference(opt, CPU, log)
        print(f"reference made in {time.perf_counter() - start:.1f} s")
    reference, notes = find_reference(None, opt.pretrained_weights, (opt.frames, opt.frequency))
    print("\n".join(line for _, line in notes))
    model, regressor, _ = load_scorer(opt, CPU)
    work = Path(known.work)
    work.mkdir(parents=True, exist_ok=True)
    test_paths, test_ef = split_videos(opt, "test")
    inside, model_s, distance_s = familiarity(opt, (model, regressor), reference, test_paths)
    print(f"\ntest split: {len(inside)} videos, flagged {inside[:, 1].mean():.1%}; ef_knn MAE vs true EF "
          f"{np.abs(inside[:, 2] - test_ef[:len(inside)]).mean():.2f}; per file: model {model_s * 1e3:.0f} ms, "
          f"distance {distance_s * 1e3:.2f} ms ({distance_s / model_s:.2%} of the model)")
    print(f"threshold {reference.threshold:.4g}; test distances median {np.median(inside[:, 0]):.4g}, "
          f"max {inside[:, 0].max():.4g}")
    print("\n| set | files | AUROC vs test split | flagged | distance median |\n|---|---|---|---|---|")
    for name, paths in outsiders(work, test_paths, np.random.default_rng(0)).items():
        if name == "colour_flow":  # skipped by scoring's colour rule before any distance: measured as if scored
            skipped = sum(item["status"] != SCORED for item in video_clips(opt, paths))
            print(f"(colour_flow: {skipped} of {len(paths)} skipped by the colour Doppler rule; below: scored anyway)")
            archive_clips.colour_flow_reason = lambda fraction: ""
        outside, _, _ = familiarity(opt, (model, regressor), reference, paths)
        print(f"| {name} | {len(outside)} | {auroc(inside[:, 0], outside[:, 0]):.3f} | {outside[:, 1].mean():.0%} | "
              f"{np.median(outside[:, 0]):.4g} |")
    # the distance at EchoNet-Dynamic scale: 7465 train videos of UniFormer-S's 512 values
    big = Reference(np.random.default_rng(0).normal(size=(7465, 512)).astype(np.float32), np.zeros(7465),
                    np.zeros(1), {"k": 5, "threshold": 1.0}, "synthetic")
    start = time.perf_counter()
    for _ in range(20):
        big.columns(np.ones((3, 512), np.float32))
    print(f"\ndistance per file against 7465 x 512 train embeddings: {(time.perf_counter() - start) / 20 * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
