"""Score the EchoNet-Dynamic test split by averaging the EF predicted for three clips of every video
(36 frames, sampling period 4, at fixed start indexes), as in the CoReEcho paper.

    python test_with_three_clips.py --data_folder EchoNet-Dynamic --pretrained_weights best.pth \
        --path_test_start_indexes test_start_indexes.pkl --path_save_test_files results/test.pkl \
        --model uniformer_small --frames 36 --frequency 4 --num_workers 4

Writes the released pickle and, beside it, predictions.csv, metrics.json, test_plots.png and test.log (README,
"What they write"). Without --path_test_start_indexes starts are drawn with --seed and saved beside the results.
--clips all also scores every video by the mean over all its clips on predict.py's grid; the three-clip results
are unchanged.
"""
import os
import time

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from datasets import EchoNetAllClips, EchoNetTest, save_start_indexes
from models import build_model, place_model, read_weights, require_kind
from utils.script.cli import on_interrupt, run_main
from utils.engine.distributed import cleanup, init_distributed
from utils.files.embeddings_file import save_embeddings
from utils.evaluation.inference import InferenceSettings, predict
from utils.files.atomic import atomic_open, atomic_write_json, atomic_write_pickle, check_writable_folder
from utils.script.errors import BadInputError
from utils.script.log import setup_logger
from utils.evaluation.metrics import format_metrics, regression_metrics
from models.options import add_data_and_model_args
from models.settings import conflict, fill_options
from utils.script.options import parser_with_defaults
from utils.script.validators import non_negative_int, positive_int
from utils.pictures.plots import prediction_figure, save_figure
from utils.engine.amp import amp_dtype
from utils.files.weights import weights_label


def parse_option(argv=None):
    parser = parser_with_defaults("test_with_three_clips.py", "CoReEcho three-clip test")
    add_data_and_model_args(parser, from_checkpoint=True)  # --frames / --frequency required when it does not say
    parser.add_argument("--pretrained_weights", type=str, required=True, help="a stage-1 or stage-2 checkpoint")
    parser.add_argument("--path_test_start_indexes", type=str, default=None,
                        help="released test_start_indexes.pkl (or .json/.csv); drawn with --seed if omitted")
    parser.add_argument("--path_save_test_files", type=str, default="./test_results/test_files.pkl")
    parser.add_argument("--batch_size", type=positive_int, default=8,
                        help="videos per forward pass (all their clips at once on a GPU)")
    parser.add_argument("--split", type=str, default="test", choices=("test", "val", "train", "all"))
    parser.add_argument("--n_clips", type=positive_int, default=3, help="clips per video when starts are drawn")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed for drawn starts")
    parser.add_argument("--clips", type=str, default="three", choices=("three", "all"),
                        help="all = also score each video by the mean over all its clips (as predict.py)")
    parser.add_argument("--clip_stride", type=positive_int, default=None,
                        help="--clips all: frames between clip starts (default: frames * frequency // 2)")
    parser.add_argument("--save_embeddings", action="store_true",
                        help="also write embeddings.npz beside the results (names, EF, each video's mean clip "
                             "embedding, predictions), read by visualize.py embeddings --embeddings")
    return parser.parse_args(argv)


def as_tensors(metrics):
    """The released pickle holds 0-dim tensors named r2 / l1 (MAE) / l2 (RMSE)."""
    return {"r2": torch.tensor(metrics["r2"]), "l1": torch.tensor(metrics["mae"]), "l2": torch.tensor(metrics["rmse"])}


def released_pickle(result, per_clip, mean_metrics):
    """The released file: metrics of the clip average, plus the best single clip (by R², ties -> later clip) with
    the released validation's outputs [N, 1], labels [N, 1], embeddings [N, d] (float32 tensors) and `aux`: the
    videos' names and EFs as the released loader yields them (batch size 1: a float32 array of shape (1,) each)."""
    n_clips, labels = result["clip_predictions"].shape[1], result["labels"]
    best = max(range(n_clips), key=lambda k: (per_clip[k]["r2"], k))
    tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return {
        "N clips": n_clips,
        "metrics xN clips": as_tensors(mean_metrics),
        "best_metrics x1 clip": as_tensors(per_clip[best]),
        "best_aux x1 clip": {
            "outputs": tensor(result["clip_predictions"][:, best:best + 1]),
            "labels": tensor(labels[:, None]),
            "embeddings": tensor(result["clip_embeddings"][:, best]),
            "aux": {"name": result["names"], "ef": [np.array([ef], dtype=np.float32) for ef in labels]},
        },
    }, best


def score(opt, model, regressor, dataset, all_clips, dist, amp):
    """(three-clip result, seconds, all-clips result or None, seconds) with progress bars and a Ctrl-C line."""
    done = {"videos": 0, "pass": "the test"}
    on_interrupt(lambda: f"interrupted during {done['pass']} after {done['videos']} of {len(dataset)} videos; "
                         "no result file was written; rerun the same command")

    def progress(name, desc):
        def counted(iterable, total):
            done["videos"], done["pass"] = 0, name
            for video in tqdm(iterable, total=total, desc=desc, disable=None if dist.is_main else True):
                yield video
                done["videos"] += 1
        return counted

    settings = InferenceSettings(amp, opt.channels_last, max_videos=opt.batch_size, num_workers=opt.num_workers)
    start = time.perf_counter()
    result = predict(model, regressor, dataset, dist, settings, progress=progress("the test", "test"))
    seconds, result_all, seconds_all = time.perf_counter() - start, None, None
    if all_clips is not None:
        start = time.perf_counter()
        result_all = predict(model, regressor, all_clips, dist, settings,
                             progress=progress("the all-clips pass", "all clips"))
        seconds_all = time.perf_counter() - start
        if result_all["names"] != result["names"]:
            raise RuntimeError("the all-clips pass scored other videos than the three-clip pass")
    return result, seconds, result_all, seconds_all


def write_tables(out_dir, result, result_all):
    """predictions.csv (a row per video) and, with --clips all, predictions_all_clips.csv (a row per clip)."""
    n_clips = result["clip_predictions"].shape[1]
    table = pd.DataFrame({"video": result["names"], "EF": result["labels"]})
    for k in range(n_clips):
        table[f"start_{k}"] = result["starts"][:, k]
    for k in range(n_clips):
        table[f"pred_clip_{k}"] = result["clip_predictions"][:, k]
    table["pred_mean"] = result["predictions"]
    if result_all is not None:
        table["n_clips_all"] = result_all["n_clips"]
        table["pred_all_clips"] = result_all["predictions"]
        per_clip_table = pd.DataFrame({
            "video": [name for name, n in zip(result_all["names"], result_all["n_clips"]) for _ in range(n)],
            "clip_start": [int(s) for starts in result_all["starts"] for s in starts],
            "pred": [float(p) for preds in result_all["clip_predictions"] for p in preds]})
        with atomic_open(os.path.join(out_dir, "predictions_all_clips.csv"), "w") as f:
            per_clip_table.to_csv(f, index=False, float_format="%.4f")
    with atomic_open(os.path.join(out_dir, "predictions.csv"), "w") as f:
        table.to_csv(f, index=False, float_format="%.4f")


def write_metrics(opt, out_dir, frames, summary, result_all, all_clips, seconds_all):
    """metrics.json: per clip and clip-mean metrics, the baseline, the timing and the all-clips numbers."""
    all_part = {}
    if result_all is not None:
        counts = result_all["n_clips"]
        all_part = {"all_clips": {
            "metrics": regression_metrics(result_all["predictions"], result_all["labels"]),
            "clip_stride": all_clips.clip_stride, "n_clips_total": int(counts.sum()),
            "n_clips_per_video": {"min": int(counts.min()), "max": int(counts.max())},
            "seconds": round(seconds_all, 3)}}
    atomic_write_json({"checkpoint": weights_label(opt.pretrained_weights),
                       "start_indexes": os.path.abspath(opt.path_test_start_indexes) if opt.path_test_start_indexes
                       else "drawn", "split": opt.split,
                       "n_videos": summary["n_videos"], "n_clips": summary["n_clips"], "frames": frames,
                       "frequency": opt.frequency, **{key: summary[key] for key in (
                           "mean_of_clips", "per_clip", "best_single_clip", "constant_mean_predictor_mae", "timing")},
                       **all_part}, os.path.join(out_dir, "metrics.json"))


def summarise(log, result, seconds, result_all, all_clips, seconds_all):
    """Log every clip's and the clip mean's metrics (and the all-clips ones); returns metrics.json's core."""
    n_clips, labels = result["clip_predictions"].shape[1], result["labels"]
    per_clip = [regression_metrics(result["clip_predictions"][:, k], labels) for k in range(n_clips)]
    for k, metrics in enumerate(per_clip):
        log.info(f"Clip {k}: {format_metrics(metrics)}")
    mean_metrics = regression_metrics(result["predictions"], labels)
    log.info(f"Mean of {n_clips} clips ({len(labels)} videos): {format_metrics(mean_metrics)}")
    # Reference point: a constant predictor at the mean EF of these very videos (a generous baseline).
    constant_mae = float(abs(labels - labels.mean()).mean())
    log.info(f"For comparison, always predicting their mean EF ({labels.mean():.1f}) gives MAE {constant_mae:.3f}")
    clips = int(result["clip_predictions"].size)
    log.info(f"{len(labels)} videos, {clips} clips in {seconds:.1f} s ({clips / seconds:.1f} clips/s)")
    if result_all is not None:
        counts = result_all["n_clips"]
        log.info(f"Mean of ALL clips (a clip every {all_clips.clip_stride} frames, {counts.min()}-{counts.max()} "
                 f"per video, {counts.sum()} in all): "
                 f"{format_metrics(regression_metrics(result_all['predictions'], labels))} "
                 f"({seconds_all:.1f} s, {counts.sum() / seconds_all:.1f} clips/s)")
    return {"n_videos": int(len(labels)), "n_clips": n_clips, "mean_of_clips": mean_metrics, "per_clip": per_clip,
            "constant_mean_predictor_mae": constant_mae,
            "timing": {"videos": int(len(labels)), "clips": clips, "seconds": round(seconds, 3),
                       "clips_per_s": round(clips / seconds, 3)}}


def main(argv=None):
    opt = parse_option(argv)
    dist = init_distributed(opt.device)
    amp = amp_dtype(opt.amp, dist.device)
    # weights and data first: a wrong path fails here, before anything is written
    weights = read_weights(opt.pretrained_weights)
    require_kind(weights, ("coreecho",))
    fill_options(opt, weights, defaults={"model": "uniformer_small"})
    missing = [f"--{key}" for key in ("frames", "frequency") if getattr(opt, key) is None]
    if missing:
        raise BadInputError(f"{opt.pretrained_weights} does not say its clip shape: give {' and '.join(missing)}")
    dataset = EchoNetTest(opt.data_folder, opt.split, opt.frames, opt.frequency, opt.path_test_start_indexes,
                          n_clips=opt.n_clips, seed=opt.seed, cache_dir=opt.cache_dir)
    all_clips = None if opt.clips == "three" else EchoNetAllClips(
        opt.data_folder, opt.split, opt.frames, opt.frequency, opt.clip_stride, cache_dir=opt.cache_dir)
    model, regressor, weights = build_model(opt.model, weights, depthwise=opt.depthwise)

    out_dir = os.path.dirname(os.path.abspath(opt.path_save_test_files))
    if dist.is_main:
        check_writable_folder(out_dir)
    log = setup_logger(os.path.join(out_dir, "test.log"), dist.is_main)
    model, regressor = place_model(model, dist.device, opt.channels_last), place_model(regressor, dist.device)
    log.info(f"Checkpoint {opt.pretrained_weights} (epoch {weights.content.get('epoch')}), device {dist.device}, "
             f"AMP {amp or 'off (fp32)'}")
    contradiction = conflict(opt, weights)  # a flag that contradicts the checkpoint runs as asked
    if contradiction:
        log.warning(contradiction)
    if dataset.frames != opt.frames:
        log.warning(f"WARNING: clips hold {dataset.frames} frames, not --frames {opt.frames} (capped, as released)")
    if opt.path_test_start_indexes is None and dist.is_main:
        drawn = os.path.join(out_dir, "test_start_indexes.json")
        save_start_indexes(dataset.start_indexes, drawn)
        log.info(f"No --path_test_start_indexes: drew starts with seed {opt.seed}, saved to {drawn}")

    result, seconds, result_all, seconds_all = score(opt, model, regressor, dataset, all_clips, dist, amp)
    if not dist.is_main:
        cleanup()
        return None

    summary = summarise(log, result, seconds, result_all, all_clips, seconds_all)
    pickled, best = released_pickle(result, summary["per_clip"], summary["mean_of_clips"])
    atomic_write_pickle(pickled, opt.path_save_test_files)
    write_tables(out_dir, result, result_all)
    write_metrics(opt, out_dir, dataset.frames, {**summary, "best_single_clip": best}, result_all, all_clips,
                  seconds_all)
    save_figure(prediction_figure(result["labels"], result["predictions"], f"({summary['n_clips']}-clip mean)"),
                os.path.join(out_dir, "test_plots.png"))
    if opt.save_embeddings:
        epoch = weights.epoch
        save_embeddings(os.path.join(out_dir, "embeddings.npz"), result["names"], result["labels"],
                        result["embeddings"], result["predictions"],
                        {"checkpoint": weights_label(opt.pretrained_weights), "epoch": epoch, "model": opt.model,
                         "split": opt.split, "frames": dataset.frames, "frequency": opt.frequency, "clips": "three",
                         "n_clips": summary["n_clips"],
                         "start_indexes": os.path.abspath(opt.path_test_start_indexes)
                         if opt.path_test_start_indexes else f"drawn with seed {opt.seed}",
                         "written_by": "test_with_three_clips.py"})
    written = [os.path.basename(opt.path_save_test_files), "predictions.csv", "metrics.json", "test_plots.png",
               "test.log"] + (["test_start_indexes.json"] if opt.path_test_start_indexes is None else []) \
        + (["predictions_all_clips.csv"] if all_clips is not None else []) \
        + (["embeddings.npz"] if opt.save_embeddings else [])
    log.info(f"Saved in {out_dir}: {', '.join(written)}")
    cleanup()
    return summary["mean_of_clips"]


if __name__ == "__main__":
    run_main(main)
