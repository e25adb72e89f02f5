"""Score the EchoNet-Dynamic test split by averaging the EF predicted for three clips of every video
(36 frames, sampling period 4, at fixed start indexes), as in the CoReEcho paper.

    python test_with_three_clips.py --data_folder EchoNet-Dynamic --pretrained_weights best.pth \
        --path_test_start_indexes test_start_indexes.pkl --path_save_test_files results/test.pkl \
        --model uniformer_small --frames 36 --frequency 4 --num_workers 4

Writes the released pickle to --path_save_test_files and, beside it, predictions.csv, metrics.json and
test_plots.png (predicted vs. true EF, Bland-Altman). Without --path_test_start_indexes, starts are drawn
with --seed and saved beside the results (test_start_indexes.json) so the run can be repeated.
"""
import argparse
import os

import pandas as pd
import torch
from tqdm import tqdm

from datasets import EchoNetTest, save_start_indexes
from models import get_feature_extractor, get_shallow_mlp_head
from utils.checkpoint import load_model_and_regressor
from utils.cli import run_main
from utils.distributed import cleanup, init_distributed
from utils.evaluation import predict
from utils.io import atomic_open, atomic_write_json, atomic_write_pickle, check_writable_folder
from utils.log import setup_logger
from utils.metrics import format_metrics, regression_metrics
from utils.options import add_data_and_model_args
from utils.plots import prediction_figure, save_figure
from utils.runtime import amp_dtype


def parse_option(argv=None):
    parser = argparse.ArgumentParser("CoReEcho three-clip test")
    add_data_and_model_args(parser)
    parser.add_argument("--pretrained_weights", type=str, required=True, help="a stage-1 or stage-2 checkpoint")
    parser.add_argument("--path_test_start_indexes", type=str, default=None,
                        help="released test_start_indexes.pkl (or .json/.csv); drawn with --seed if omitted")
    parser.add_argument("--path_save_test_files", type=str, default="./test_results/test_files.pkl")
    parser.add_argument("--batch_size", type=int, default=8, help="videos per forward pass (all their clips at once)")
    parser.add_argument("--split", type=str, default="test", choices=("test", "val", "train", "all"))
    parser.add_argument("--n_clips", type=int, default=3, help="clips per video when starts are drawn")
    parser.add_argument("--seed", type=int, default=0, help="seed for drawn starts")
    # fp32 unless asked otherwise, so published checkpoints reproduce their reported numbers exactly
    parser.set_defaults(amp="none")
    return parser.parse_args(argv)


def as_tensors(metrics):
    """The released pickle holds 0-dim tensors named r2 / l1 (MAE) / l2 (RMSE)."""
    return {"r2": torch.tensor(metrics["r2"]), "l1": torch.tensor(metrics["mae"]), "l2": torch.tensor(metrics["rmse"])}


def main(argv=None):
    opt = parse_option(argv)
    dist = init_distributed(opt.device)
    out_dir = os.path.dirname(os.path.abspath(opt.path_save_test_files))
    if dist.is_main:
        check_writable_folder(out_dir)
    log = setup_logger(os.path.join(out_dir, "test.log"), dist.is_main)
    amp = amp_dtype(opt.amp, dist.device)

    model = get_feature_extractor(opt.model, None)
    regressor = get_shallow_mlp_head(model.head.in_features, 1)
    checkpoint = load_model_and_regressor(opt.pretrained_weights, model, regressor)
    model, regressor = model.to(dist.device), regressor.to(dist.device)
    if opt.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    log.info(f"Checkpoint {opt.pretrained_weights} (epoch {checkpoint.get('epoch')}), device {dist.device}")

    dataset = EchoNetTest(opt.data_folder, opt.frames, opt.frequency, opt.path_test_start_indexes, split=opt.split,
                          n_clips=opt.n_clips, seed=opt.seed, cache_dir=opt.cache_dir)
    if opt.path_test_start_indexes is None and dist.is_main:
        drawn = os.path.join(out_dir, "test_start_indexes.json")
        save_start_indexes(dataset.start_indexes, drawn)
        log.info(f"No --path_test_start_indexes: drew starts with seed {opt.seed}, saved to {drawn}")

    def test_progress(iterable, total):
        return tqdm(iterable, total=total, desc="test", disable=None if dist.is_main else True)

    result = predict(model, regressor, dataset, dist, batch_size=opt.batch_size, num_workers=opt.num_workers, amp=amp,
                     channels_last=opt.channels_last, progress=test_progress)
    if not dist.is_main:
        cleanup()
        return None

    n_clips = result["clip_predictions"].shape[1]
    labels = result["labels"]
    per_clip = [regression_metrics(result["clip_predictions"][:, k], labels) for k in range(n_clips)]
    for k, metrics in enumerate(per_clip):
        log.info(f"Clip {k}: {format_metrics(metrics)}")
    mean_metrics = regression_metrics(result["predictions"], labels)
    log.info(f"Mean of {n_clips} clips ({len(labels)} videos): {format_metrics(mean_metrics)}")
    # Reference point: a constant predictor at the mean EF of these very videos (a generous baseline).
    constant_mae = float(abs(labels - labels.mean()).mean())
    log.info(f"For comparison, always predicting their mean EF ({labels.mean():.1f}) gives MAE {constant_mae:.3f}")

    # The released pickle: metrics of the clip average, plus the best single clip (by R², ties -> later clip).
    best = max(range(n_clips), key=lambda k: (per_clip[k]["r2"], k))
    tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    atomic_write_pickle({
        "N clips": n_clips,
        "metrics xN clips": as_tensors(mean_metrics),
        "best_metrics x1 clip": as_tensors(per_clip[best]),
        "best_aux x1 clip": {
            "outputs": tensor(result["clip_predictions"][:, best:best + 1]),
            "labels": tensor(labels[:, None]),
            "embeddings": tensor(result["clip_embeddings"][:, best]),
            "aux": {"name": result["names"], "ef": [float(x) for x in labels]},
        },
    }, opt.path_save_test_files)

    table = pd.DataFrame({"video": result["names"], "EF": labels})
    for k in range(n_clips):
        table[f"start_{k}"] = result["starts"][:, k]
    for k in range(n_clips):
        table[f"pred_clip_{k}"] = result["clip_predictions"][:, k]
    table["pred_mean"] = result["predictions"]
    with atomic_open(os.path.join(out_dir, "predictions.csv"), "w") as f:
        table.to_csv(f, index=False, float_format="%.4f")
    atomic_write_json({
        "checkpoint": os.path.abspath(opt.pretrained_weights),
        "start_indexes": os.path.abspath(opt.path_test_start_indexes) if opt.path_test_start_indexes else "drawn",
        "split": opt.split, "n_videos": int(len(labels)), "n_clips": n_clips,
        "frames": opt.frames, "frequency": opt.frequency,
        "mean_of_clips": mean_metrics, "per_clip": per_clip, "best_single_clip": best,
        "constant_mean_predictor_mae": constant_mae,
    }, os.path.join(out_dir, "metrics.json"))
    save_figure(prediction_figure(labels, result["predictions"], f"({n_clips}-clip mean)"),
                os.path.join(out_dir, "test_plots.png"))
    log.info(f"Wrote {opt.path_save_test_files}, and predictions.csv, metrics.json, test_plots.png in {out_dir}")
    cleanup()
    return mean_metrics


if __name__ == "__main__":
    run_main(main)
