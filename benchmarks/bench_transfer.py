"""Transfer learning on the CPU: embeddings per second of `transfer_learning.py --mode linear`, and the time
of a full 10-fold CAMUS comparison of two checkpoints estimated from it.

    python benchmarks/bench_transfer.py [--model uniformer_small] [--frames 32] [--seconds 60] [--threads N]

Measures, in one process: (1) the encoder on one clip at a time, random weights, fp32, no gradients (clips/s over
about --seconds after a warm-up); (2) reading one synthetic CAMUS sequence and cutting its ED->ES clip; (3) one
fold's head of each frozen mode (transfer.frozen.fit_head with transfer_learning.py's defaults) on random
CAMUS-sized embeddings. Then the estimate for `--dataset camus --pretrained_weights A B --mode linear` (1000
embeddings, 10 folds x 2 checkpoints heads), and for a second run that finds every embedding in the cache.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transfer.frozen import fit_head  # noqa: E402
from datasets.sources import camus  # noqa: E402
from datasets.clips import cut_clips  # noqa: E402
from datasets.synthetic.transfer import make_synthetic_camus  # noqa: E402
from models import get_feature_extractor  # noqa: E402

PATIENTS, VIEWS, CHECKPOINTS, FOLDS = 500, 1, 2, 10  # --views 4CH: one sequence per patient
# transfer_learning.py's defaults for the heads (tests/benchmarks/test_bench_transfer.py keeps them equal)
HEAD_DEFAULTS = dict(seed=0, head_epochs=100, head_lr=1e-3, head_weight_decay=1e-4, head_batch_size=64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="uniformer_small", choices=("uniformer_small", "uniformer_base",
                                                                       "uniformer_tiny"))
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0, help="time spent on encoder passes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    opt = parser.parse_args()
    if opt.threads:
        torch.set_num_threads(opt.threads)
    torch.manual_seed(0)
    model = get_feature_extractor(opt.model).eval()
    clip = torch.randn(1, 3, opt.frames, 112, 112)

    with torch.no_grad():
        began = time.perf_counter()
        model(clip)
        warm_up = time.perf_counter() - began
        passes, began = 0, time.perf_counter()
        while passes < 2 or time.perf_counter() - began < opt.seconds - warm_up:
            model(clip)
            passes += 1
        forward = (time.perf_counter() - began) / passes

    with tempfile.TemporaryDirectory() as tmp:
        samples = camus.list_samples(make_synthetic_camus(Path(tmp), n=4, seed=0), views="both")
        began = time.perf_counter()
        for sample in samples:
            frames = np.repeat(camus.load_frames(sample, opt.frames)[..., None], 3, axis=-1)
            cut_clips(frames, [0], opt.frames, 1)
        reading = (time.perf_counter() - began) / len(samples)

    width = model.head.in_features
    rng = np.random.default_rng(0)
    n_train = (PATIENTS - PATIENTS // FOLDS) * VIEWS
    features = rng.normal(size=(n_train, width)).astype(np.float32)
    targets = rng.uniform(20, 80, n_train)
    heads = {}
    for mode in ("linear", "mlp"):
        began = time.perf_counter()
        fit_head(features, targets, "regression", SimpleNamespace(mode=mode, **HEAD_DEFAULTS))
        heads[mode] = time.perf_counter() - began

    per_video = forward + reading
    embeddings = PATIENTS * VIEWS * CHECKPOINTS
    print(f"CPU: {torch.get_num_threads()} torch threads, torch {torch.__version__}; {opt.model} (width {width}), "
          f"clips of {opt.frames}x112x112, fp32; {passes} timed passes after a {warm_up:.1f} s warm-up")
    print()
    print("| step | seconds | rate |")
    print("|---|---:|---:|")
    print(f"| encoder forward, one clip | {forward:.3f} | {1 / forward:.2f} clips/s |")
    print(f"| CAMUS read + clip, one video | {reading:.3f} | {1 / reading:.1f} videos/s |")
    print(f"| embedding one CAMUS video (both) | {per_video:.3f} | {1 / per_video:.2f} embeddings/s |")
    for mode, seconds in heads.items():
        print(f"| {mode} head, one fold ({n_train} clips, {HEAD_DEFAULTS['head_epochs']} epochs x batch "
              f"{HEAD_DEFAULTS['head_batch_size']}) | {seconds:.2f} | |")
    print()
    for mode, seconds in heads.items():
        first = embeddings * per_video + FOLDS * CHECKPOINTS * seconds
        cached = FOLDS * CHECKPOINTS * seconds
        print(f"Estimate, --mode {mode}, 10-fold CAMUS ({PATIENTS} patients x {VIEWS} views x {CHECKPOINTS} "
              f"checkpoints = {embeddings} embeddings): {first / 60:.1f} min "
              f"({embeddings * per_video / 60:.1f} min embedding + {cached / 60:.1f} min heads); "
              f"again with the embeddings cached: {cached / 60:.1f} min")


if __name__ == "__main__":
    main()
