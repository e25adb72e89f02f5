"""Videos/s of predict.py's pipeline on the CPU, and where the time goes.

For every video the stages predict.py runs are timed one by one:
  decode + convert  datasets.sources.any_video.load_echo_video (decode, grey, sector crop, square, 112x112, resample)
  clips             datasets.clips.clip_grid + cut_clips (zero-padding, normalisation), all grid clips
  model             utils.evaluation.inference.embed_clips + the regressor, one clip at a time (as on a CPU)
and predict.main itself is timed end to end (building and loading the model and writing the CSVs
included) with 0 and with --workers data-loader workers. Two inputs: the EchoNet AVIs as they are
(112x112, 50 fps), and the same videos as a user would export them: enlarged 4x into a 640x480
screen with burnt-in text, at 30 fps, as MP4 (auto crop, resize and 30 -> 50 fps resampling then
do real work).
Videos: the nine real samples (../shared/data/echonet_samples) or, if absent, --root, or synthetic ones.

    python benchmarks/bench_predict.py [--model uniformer_small] [--frames 36 --frequency 4] [--workers 2]
                                        [--threads N]
"""
import argparse
import contextlib
import io
import runpy
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's packages
from datasets import make_synthetic_echonet  # noqa: E402
from datasets.sources.any_video import expand_inputs, load_echo_video  # noqa: E402
from datasets.clips import clip_grid, cut_clips  # noqa: E402
from datasets.video import decode_video  # noqa: E402
from models import get_feature_extractor, get_shallow_mlp_head  # noqa: E402
from utils.files.checkpoint import save_best  # noqa: E402
from utils.evaluation.inference import embed_clips  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "echonet_samples"


def write_screen_mp4(avi: Path, out: Path) -> Path:
    """The AVI enlarged 4x (448x448) into a 640x480 dark screen with text, 50 -> 30 fps, as MP4."""
    frames = decode_video(avi)[..., 1]
    keep = np.floor(np.arange(int(len(frames) * 30 / 50)) * 50 / 30 + 1e-6).astype(int)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    for frame in frames[keep]:
        screen = np.full((480, 640), 16, np.uint8)
        screen[16:464, 96:544] = cv2.resize(frame, (448, 448), interpolation=cv2.INTER_CUBIC)
        cv2.putText(screen, "ACME ECHO  HR 72  12:34:56", (20, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1)
        writer.write(cv2.cvtColor(screen, cv2.COLOR_GRAY2BGR))
    writer.release()
    return out


def stage_times(videos, model, regressor, opt):
    """Seconds per stage summed over the videos, and the number of clips."""
    device = torch.device("cpu")
    load = cut = forward = 0.0
    n_clips = 0
    with torch.no_grad():
        for video in videos:
            t0 = time.perf_counter()
            frames, _ = load_echo_video(video, "auto", 50)
            t1 = time.perf_counter()
            clips = cut_clips(frames, clip_grid(len(frames), opt.frames, opt.frequency), opt.frames, opt.frequency)
            t2 = time.perf_counter()
            regressor(embed_clips(model, clips, device))
            t3 = time.perf_counter()
            load, cut, forward, n_clips = load + t1 - t0, cut + t2 - t1, forward + t3 - t2, n_clips + len(clips)
    return load, cut, forward, n_clips


def end_to_end(folder, weights, out, opt, workers):
    args = ["--pretrained_weights", str(weights), "--model", opt.model, "--frames", str(opt.frames), "--frequency",
            str(opt.frequency), "--device", "cpu", "--num_workers", str(workers), "--output", str(out), str(folder)]
    sys.argv = ["predict.py", *args]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        start = time.perf_counter()
        runpy.run_path(str(ROOT / "predict.py"), run_name="__main__")  # the command itself, in this process
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="uniformer_small")
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--frequency", type=int, default=4)
    parser.add_argument("--root", default=None, help="a folder of videos (used when the samples are absent)")
    parser.add_argument("--workers", type=int, default=2, help="data-loader workers of the second end-to-end run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    opt = parser.parse_args()
    if opt.threads:
        torch.set_num_threads(opt.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if (SAMPLES / "Videos").is_dir():
            source = SAMPLES / "Videos"
        elif opt.root:
            source = Path(opt.root)
        else:
            source = make_synthetic_echonet(tmp / "synthetic", n=9, seed=0) / "Videos"
        avis = expand_inputs([source])
        (tmp / "mp4").mkdir()
        mp4s = [write_screen_mp4(avi, tmp / "mp4" / (avi.stem + ".mp4")) for avi in avis]
        torch.manual_seed(0)
        model = get_feature_extractor(opt.model).eval()
        regressor = get_shallow_mlp_head(model.head.in_features).eval()
        weights = tmp / "best.pth"
        save_best(weights, model, regressor, 0, 0.0)
        with torch.no_grad():  # one warm-up forward: one-off kernel set-up is not timed
            model(torch.zeros(1, 3, opt.frames, 112, 112))
        print(f"CPU, torch {torch.__version__} ({torch.get_num_threads()} threads), {opt.model}, clips of "
              f"{opt.frames} frames every {opt.frequency}, a clip every {opt.frames * opt.frequency // 2} frames; "
              f"{len(avis)} videos from {source}")
        header = (f"{'input':26s} {'clips/video':>11s} {'decode+convert':>15s} {'clips':>7s} {'model':>8s} "
                  f"{'data share':>10s} {'videos/s (0 w)':>15s} {f'videos/s ({opt.workers} w)':>15s}")
        print(header)
        for label, videos, folder in (("EchoNet AVI 112x112 50fps", avis, source),
                                      ("640x480 30fps MP4 + text", mp4s, tmp / "mp4")):
            load, cut, forward, n_clips = stage_times(videos, model, regressor, opt)
            whole = [end_to_end(folder, weights, tmp / "out" / "ef.csv", opt, w) for w in (0, opt.workers)]
            n = len(videos)
            share = (load + cut) / (load + cut + forward)
            print(f"{label:26s} {n_clips / n:11.2f} {1000 * load / n:12.1f} ms {1000 * cut / n:4.1f} ms "
                  f"{1000 * forward / n:5.0f} ms {100 * share:9.1f}% {n / whole[0]:15.2f} {n / whole[1]:15.2f}")
        print("stage columns: ms per video; data share = (decode+convert + clips) / (those + model)")


if __name__ == "__main__":
    main()
