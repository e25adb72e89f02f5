"""Validation of a training run: clip-averaged EF predictions on a dataset, the epoch's report (log lines, timing,
wandb), and `validate_and_save`, the end of an EF training epoch both stages share: validate, then the saver's
best.pth and last.pth (saving itself is the saver's)."""
import time

import numpy as np
import torch
from tqdm import tqdm

from utils.engine.distributed import broadcast_buffers
from utils.evaluation import projection
from utils.evaluation.inference import InferenceSettings, evaluate
from utils.evaluation.metrics import format_metrics
from utils.evaluation.representation import format_representation_metrics, representation_metrics
from utils.pictures.plots import embedding_maps
from utils.training.meter import duration
from utils.training.wandb_logger import log_images


def validate(run, model, regressor, dataset, desc):
    """(metrics, result, seconds) of the clip-averaged predictions on `dataset`. Every rank first takes rank 0's
    buffers, so all validate the model the checkpoints keep."""
    broadcast_buffers(model, regressor)
    start = time.perf_counter()
    opt = run.opt
    settings = InferenceSettings(run.amp, opt.channels_last, max_videos=opt.batch_size, num_workers=opt.num_workers)
    metrics, result = evaluate(model, regressor, dataset, run.dist, settings,
                               progress=lambda iterable, total: tqdm(iterable, total=total, desc=desc, leave=False,
                                                                     disable=None if run.is_main else True))
    return metrics, result, time.perf_counter() - start


def report_epoch(run, saver, meter, last_epoch, validation, text, wandb_metrics=None):
    """Log the epoch's speed and validation (`validation`: what `validate` returned, `text`: its numbers as
    logged), add them to saver.timing and, with `wandb_metrics` (the numbers as wandb shows them), send them
    and the embedding maps to wandb when it is on.

    `validation`'s result may hold "clip_predictions" (counted as clips) and, for EF labels, "embeddings" and
    "labels" (their ordering metrics are logged)."""
    epoch, log = meter.epoch, run.log
    _, result, seconds = validation
    epoch_seconds = meter.seconds + seconds
    left = (last_epoch - epoch) * epoch_seconds
    log.info(f"Epoch {epoch}: {meter.clips_per_s:.1f} clips/s, data wait {100 * meter.data_share:.0f}%, "
             f"{duration(epoch_seconds)} with validation; run ETA {duration(left)}")
    log.info(f"Epoch {epoch} validation: {text} | "
             f"best {saver.error_name} {saver.best_error:.3f} (epoch {saver.best_epoch})")
    ordering = {}
    if "embeddings" in result and "labels" in result:
        ordering = representation_metrics(result["embeddings"], result["labels"])
        log.info(f"Epoch {epoch} validation embeddings: {format_representation_metrics(ordering)}")
    clips = sum(np.size(p) for p in result.get("clip_predictions", ()))  # an array [N, n] or N arrays
    saver.timing["epochs"].append(meter.summary())
    saver.timing["validation"].append({"epoch": epoch, "clips": int(clips), "seconds": round(seconds, 3)})
    if run.device.type == "cuda":
        saver.timing["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(run.device) / 2**30, 3)
    if wandb_metrics is not None:
        _wandb_epoch(run, meter, validation, ordering, wandb_metrics)


def validate_and_save(run, saver, meter, model, regressor, val_set):
    """After an epoch of EF training: validate, best.pth when the MAE is the best yet (ties -> the later epoch), the
    report, last.pth; a SIGTERM that came during validation stops the run after last.pth."""
    epoch = meter.epoch
    validation = metrics, _, _ = validate(run, model, regressor, val_set, f"val {epoch}")
    saver.save_best(epoch, metrics["mae"], metrics)
    report_epoch(run, saver, meter, run.opt.epochs, validation, format_metrics(metrics), released_names(metrics))
    run.end_epoch(saver, epoch)


def released_names(metrics):
    """The EF validation numbers under the names the released scripts log to wandb."""
    return {"Val R2": metrics["r2"], "Val L2": metrics["rmse"], "Val L1": metrics["mae"]}


def _wandb_epoch(run, meter, validation, ordering, metrics):
    """Send the epoch's numbers (`metrics`, named as wandb shows them) and the embedding maps to wandb, if on."""
    if not run.is_main or run.wandb is None:
        return
    epoch, result = meter.epoch, validation[1]
    run.wandb.log({"epoch": epoch, "lr": meter.lr, **metrics, "clips/s": meter.clips_per_s,
                   **{f"Val embedding {name}": value for name, value in ordering.items()},
                   **{f"train {name}": meter.average(name) for name in meter.sums}}, step=epoch)
    if ordering:
        log_images(run.wandb, embedding_maps(projection.projections(result["embeddings"]), result["labels"], "Val",
                                             title=f"val split, stage {run.stage}, epoch {epoch}"), step=epoch)
