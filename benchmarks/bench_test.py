"""Three-clip test, seconds per video: the released approach (one full decode per clip, batch size 1)
vs. this project (one partial decode per video, all clips of several videos in one forward pass).
Reports the data side (decode + clip preparation) and the whole pass, and checks the predictions agree.

    python benchmarks/bench_test.py [--model uniformer_small] [--root DIR] [--batch_size 4]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Subset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datasets import MEAN, STD, EchoNetTest, make_synthetic_echonet  # noqa: E402
from models import get_feature_extractor, get_shallow_mlp_head  # noqa: E402
from utils.engine.distributed import init_distributed  # noqa: E402
from utils.evaluation.inference import InferenceSettings, predict  # noqa: E402

FRAMES, FREQUENCY = 36, 4
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "echonet_samples"


def released_style_clip(path, start):
    """One test clip the way the released EchoNetTest makes it: whole video decoded and made float32."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    video = np.stack(frames).transpose(3, 0, 1, 2).astype(np.float32)
    missing = FRAMES * FREQUENCY - video.shape[1]
    if missing > 0:
        video = np.concatenate([video, np.zeros((3, missing, 112, 112), np.float32)], axis=1)
    clip = video[:, start + FREQUENCY * np.arange(FRAMES)]
    return torch.from_numpy((clip - MEAN.reshape(3, 1, 1, 1)) / STD.reshape(3, 1, 1, 1)).float()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="uniformer_small")
    parser.add_argument("--root", default=None)
    parser.add_argument("--batch_size", type=int, default=4, help="videos per forward pass (this project)")
    opt = parser.parse_args()
    dist = init_distributed("auto")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(opt.root) if opt.root else SAMPLES
        if not (root / "FileList.csv").exists():
            root = make_synthetic_echonet(Path(tmp) / "synthetic", n=12, seed=0)
        dataset = EchoNetTest(str(root), "all", FRAMES, FREQUENCY, None, n_clips=3, seed=0)
        paths = [Path(root) / "Videos" / name for name in dataset.vnames]
        n = len(dataset)
        torch.manual_seed(0)
        model = get_feature_extractor(opt.model).to(dist.device).eval()
        regressor = get_shallow_mlp_head(model.head.in_features).to(dist.device).eval()
        print(f"device: {dist.device} ({torch.cuda.get_device_name() if dist.device.type == 'cuda' else 'CPU'}), "
              f"{opt.model}, {n} videos x 3 clips of {FRAMES} frames (period {FREQUENCY})")

        # data side only
        start = time.perf_counter()
        for path, name in zip(paths, dataset.vnames):
            for s in dataset.start_indexes[name]:
                released_style_clip(path, int(s))
        released_data = (time.perf_counter() - start) / n
        start = time.perf_counter()
        for i in range(n):
            dataset[i]
        ours_data = (time.perf_counter() - start) / n

        # whole pass: released = per clip, batch 1; ours = predict() with all clips of several videos per batch.
        # Warm both paths up on their batch shapes first, so one-off kernel set-up is not timed.
        with torch.no_grad():
            model(torch.zeros(1, 3, FRAMES, 112, 112, device=dist.device))
        predict(model, regressor, Subset(dataset, range(min(n, opt.batch_size))), dist,
                InferenceSettings(max_videos=opt.batch_size))
        with torch.no_grad():
            start = time.perf_counter()
            released_predictions = []
            for path, name in zip(paths, dataset.vnames):
                clips = [regressor(model(released_style_clip(path, int(s))[None].to(dist.device))[1]).item()
                         for s in dataset.start_indexes[name]]
                released_predictions.append(np.mean(clips))
            released_whole = (time.perf_counter() - start) / n
        start = time.perf_counter()
        ours = predict(model, regressor, dataset, dist, InferenceSettings(max_videos=opt.batch_size))
        ours_whole = (time.perf_counter() - start) / n

    agree = np.abs(np.array(released_predictions) - ours["predictions"]).max()
    print(f"{'':28s} {'released':>10s} {'this':>10s} {'speed-up':>9s}")
    print(f"{'data s/video (3 clips)':28s} {released_data:10.4f} {ours_data:10.4f} {released_data / ours_data:8.1f}x")
    print(f"{'whole test s/video':28s} {released_whole:10.4f} {ours_whole:10.4f} {released_whole / ours_whole:8.1f}x")
    print(f"max |prediction difference| between the two: {agree:.2e} EF points")


if __name__ == "__main__":
    main()
