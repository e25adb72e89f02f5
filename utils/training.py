"""Pieces both training stages share: run set-up, per-epoch validation and checkpoints, resume,
and the final report on test/val/train. The scripts keep the training loops themselves."""
import math
import os
import time

import torch
from tqdm import tqdm

from datasets import EchoNetTest
from utils.checkpoint import load_checkpoint, load_state_dict_strict, save_best, save_last
from utils.distributed import barrier, init_distributed
from utils.evaluation import evaluate
from utils.io import atomic_write_json, check_writable_folder
from utils.log import setup_logger
from utils.metrics import format_metrics
from utils.options import run_name
from utils.plots import embedding_map, embedding_maps, save_figure
from utils.runtime import make_loader
from utils.seed import get_rng_state, set_rng_state, set_seed
from utils.wandb_logger import init_wandb, log_images


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; training stops before anything is saved."""


def setup_run(opt, stage):
    """Device/process group, seed, run folder, log file and (optional) wandb run."""
    dist = init_distributed(opt.device)
    set_seed(opt.trial)
    opt.optim = "adamw"
    opt.model_name = run_name(opt, stage)
    opt.model_path = opt.save_root  # released attribute name
    opt.save_folder = os.path.join(opt.save_root, opt.model_name)
    if dist.is_main:
        check_writable_folder(opt.save_folder)
    barrier()
    log = setup_logger(os.path.join(opt.save_folder, "training.log"), dist.is_main)
    if dist.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    log.info(f"Run: {opt.model_name}")
    log.info(f"Options: {vars(opt)}")
    log.info(f"Device: {dist.device} x {dist.world_size} process(es)")
    wandb_run = init_wandb(opt, opt.save_folder, opt.wandb and dist.is_main)
    return dist, log, wandb_run


def eval_dataset(opt, split):
    """Validation-style data: `val_n_clips_per_sample` random clips per video, fixed by --trial."""
    return EchoNetTest(opt.data_folder, opt.frames, opt.frequency, None, split=split,
                       n_clips=opt.val_n_clips_per_sample, seed=opt.trial, cache_dir=opt.cache_dir)


def training_loader(opt, dist, train_set):
    """Shuffled loader that drops the last incomplete batch (as released); refuses a split too small
    for a single batch."""
    loader = make_loader(train_set, opt.batch_size, opt.num_workers, dist, shuffle=True, drop_last=True,
                         seed=opt.trial, prefetch_factor=opt.prefetch_factor)
    if len(loader) == 0:
        raise ValueError(f"{opt.data_folder}: {len(train_set)} training videos is fewer than "
                         f"--batch_size {opt.batch_size} x {dist.world_size} process(es); lower --batch_size")
    return loader


def progress(dist, desc):
    def wrap(iterable, total=None):
        # disable=None: bars on a terminal only, so log files and CI output stay clean
        return tqdm(iterable, total=total, desc=desc, leave=False, disable=None if dist.is_main else True,
                    dynamic_ncols=True)
    return wrap


def run_evaluation(opt, dist, model, regressor, dataset, amp, desc):
    return evaluate(model, regressor, dataset, dist, batch_size=opt.batch_size, num_workers=opt.num_workers,
                    amp=amp, channels_last=opt.channels_last, progress=progress(dist, desc))


def check_finite(value, epoch, step, what, opt):
    """`value` is the loss as a Python float (one host sync per loss, shared with the logging)."""
    if not math.isfinite(value):
        last = os.path.join(opt.save_folder, "last.pth")
        raise NonFiniteLossError(
            f"non-finite {what} ({value}) at epoch {epoch}, step {step}; stopped without saving, "
            f"the last good checkpoint is {last}" + ("" if os.path.exists(last) else " (none yet)"))


def end_of_epoch(opt, dist, log, wandb_run, epoch, lr, model, regressor, val_set, amp, best, resume_state,
                 last_best_error):
    """Validate, keep best.pth (by validation MAE), then last.pth with everything needed to resume."""
    metrics, result = run_evaluation(opt, dist, model, regressor, val_set, amp, f"val {epoch}")
    is_best = metrics["mae"] <= best["error"]
    if is_best:
        best.update(error=metrics["mae"], epoch=epoch)
    log.info(f"Epoch {epoch} validation: {format_metrics(metrics)} | "
             f"best MAE {best['error']:.3f} (epoch {best['epoch']})")
    if dist.is_main:
        # best.pth first: a crash between the two writes leaves best.pth current and last.pth one epoch older.
        if is_best:
            save_best(os.path.join(opt.save_folder, "best.pth"), model, regressor, epoch, metrics["mae"])
        if wandb_run is not None:
            wandb_run.log({"epoch": epoch, "lr": lr, "Val R2": metrics["r2"], "Val L2": metrics["rmse"],
                           "Val L1": metrics["mae"]}, step=epoch)
            log_images(wandb_run, embedding_maps(result["embeddings"], result["labels"], "Val"), step=epoch)
        resume_state.update(best_error=best["error"], best_epoch=best["epoch"], rng=get_rng_state())
        save_last(os.path.join(opt.save_folder, "last.pth"), opt, model, regressor, epoch,
                  best["error"] if last_best_error else None, resume_state)
    barrier()


def resume_path(opt):
    if opt.resume is None:
        return None
    path = os.path.join(opt.save_folder, "last.pth") if opt.resume == "auto" else opt.resume
    if opt.resume == "auto" and not os.path.exists(path):
        return None
    return path


def maybe_resume(opt, model, regressor, optimizers, scaler, log):
    """(start_epoch, best) from --resume's last.pth, or a fresh start."""
    path = resume_path(opt)
    if path:
        return restore(path, model, regressor, optimizers, scaler, log)
    if opt.resume:
        log.info("--resume: no last.pth in the run folder yet, starting from scratch")
    return 0, {"error": float("inf"), "epoch": -1}


def restore(path, model, regressor, optimizers, scaler, log):
    """Load last.pth written by this project; returns (start_epoch, best)."""
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, dict) or "resume" not in checkpoint:
        raise ValueError(f"{path}: not a resumable last.pth of this project (no 'resume' entry)")
    load_state_dict_strict(model, checkpoint["model"], "model", path)
    load_state_dict_strict(regressor, checkpoint["regressor"], "regressor", path)
    state = checkpoint["resume"]
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state[name])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    log.info(f"Resumed from {path}: epoch {checkpoint['epoch']} done, best MAE {state['best_error']:.3f} "
             f"(epoch {state['best_epoch']})")
    return checkpoint["epoch"] + 1, {"error": state["best_error"], "epoch": state["best_epoch"]}


def final_report(opt, dist, log, wandb_run, model, regressor, amp):
    """Evaluate best.pth on test, val and train (no augmentation), as the released scripts do."""
    best_path = os.path.join(opt.save_folder, "best.pth")
    checkpoint = load_checkpoint(best_path)
    load_state_dict_strict(model, checkpoint["model"], "model", best_path)
    load_state_dict_strict(regressor, checkpoint["regressor"], "regressor", best_path)
    log.info("=" * 100)
    log.info(f"Best checkpoint: epoch {checkpoint['epoch']}, validation MAE {float(checkpoint['best_error']):.3f}")
    report, figures = {"best_epoch": int(checkpoint["epoch"])}, {}
    for split in ("test", "val", "train"):
        start = time.time()
        metrics, result = run_evaluation(opt, dist, model, regressor, eval_dataset(opt, split), amp, split)
        report[split] = metrics
        log.info(f"{split.capitalize():5s} {format_metrics(metrics)}  "
                 f"({len(result['names'])} videos, {time.time() - start:.0f}s)")
        if wandb_run is not None:
            figures.update(embedding_maps(result["embeddings"], result["labels"], f"(Best) {split.capitalize()}"))
        if dist.is_main and split == "test":  # the wandb t-SNE when there is one: computed once
            tsne = figures.get("(Best) Test TSNE (ef)")
            if tsne is None:
                tsne = embedding_map(result["embeddings"], result["labels"], "tsne", 7)
            save_figure(tsne, os.path.join(opt.save_folder, "test_embeddings_tsne.png"), close=wandb_run is None)
    if dist.is_main:
        atomic_write_json(report, os.path.join(opt.save_folder, "final_metrics.json"))
        if wandb_run is not None:
            names = (("R2", "r2"), ("L2", "rmse"), ("L1", "mae"))
            wandb_run.log({f"(Best) {split.capitalize()} {name}": report[split][key]
                           for split in ("test", "val", "train") for name, key in names})
            log_images(wandb_run, figures)
    log.info(f"Saved in {opt.save_folder}: best.pth, last.pth, training.log, final_metrics.json")
    return report
