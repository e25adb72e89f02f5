"""One training run: its processes and device, folder, log, wandb, AMP, best error, checkpoints and speed.

The training scripts keep their loops; a `Run` holds everything around them:

    run = Run.start(opt, stage=1)                  # device / process group, seed, folder, log, wandb
    loader = run.loader(train_set)                 # shuffled by (trial, epoch), same for any --num_workers
    run.resume(model, regressor, optimizers, scaler)
    for epoch in range(run.start_epoch, opt.epochs + 1):
        meter = run.training_epoch(epoch, loader, lr)  # iterate it; meter.update(clips, **losses) per step
        ...
        run.end_epoch(epoch, meter, model, regressor, val_set, resume_state)
    run.finish(model, regressor, report_sets)      # best.pth on test / val / train, figures, summary

Files in the run folder: best.pth, last.pth, training.log, final_metrics.json, timing.json (clips/s,
data-loader wait, validation and final-report times, peak GPU memory) and the test t-SNE figure.

Other trainings (e.g. a fine-tune fold of transfer_learning.py) use the same object with a folder and log of
their own (`Run.start(opt, stage, name=..., folder=..., log=...)`), their own validation
(`end_epoch(..., evaluate=...)`, choosing best.pth by `metrics["error"]`, named by `run.error_name`), and
need not call `finish`.
"""
import argparse
import math
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from utils.files.checkpoint import load_checkpoint, load_state_dict_strict, save_best, save_last
from utils.script.cli import on_interrupt
from utils.engine.distributed import barrier, broadcast_buffers, cleanup, gather_objects, init_distributed
from utils.script.errors import BadInputError, MissingInputError, NonFiniteLossError, OutputError
from utils.evaluation.inference import evaluate
from utils.files.atomic import atomic_copy, atomic_write_json, check_writable_folder
from utils.script.log import FILE_ONLY, setup_logger
from utils.evaluation import projection
from utils.evaluation.metrics import format_metrics
from utils.script.options import run_name
from utils.pictures.plots import embedding_map, embedding_maps, save_figure
from utils.evaluation.representation import format_representation_metrics, representation_metrics
from utils.engine.amp import amp_dtype
from utils.engine.loaders import batches, make_loader
from utils.engine.seed import get_rng_state, set_rng_state, set_seed
from utils.training.wandb_logger import init_wandb, log_images


# Options that shape a run's results: a resume with others still works, with a warning (--epochs may change).
RESUME_OPTIONS = ("model", "frames", "frequency", "batch_size", "learning_rate", "weight_decay", "lr_decay_rate",
                  "lr_step_epoch", "temp", "label_diff", "feature_sim", "aug", "trial", "amp", "depthwise",
                  "val_n_clips_per_sample", "sync_bn", "data_folder")


def _duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class EpochMeter:
    """Iterates a training loader for one epoch and keeps its numbers: loss averages, clips/s, the share
    of time spent waiting for data, and the ETA. `update(clips, **losses)` once per step."""

    def __init__(self, run, epoch, loader, lr):
        self.run, self.epoch, self.loader, self.lr = run, epoch, loader, lr
        self.steps, self.clips, self.data_wait = 0, 0, 0.0
        self.sums = {}
        self.seconds, self._start = 0.0, time.perf_counter()

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        bar = tqdm(total=len(self.loader), desc=f"epoch {self.epoch}", leave=False, dynamic_ncols=True,
                   disable=None if self.run.is_main else True)
        self._start = waited_from = time.perf_counter()
        try:
            for batch in batches(self.loader):
                self.data_wait += time.perf_counter() - waited_from
                self.run.step = self.steps + 1  # the step in progress, 1-based as in the log lines
                yield batch
                bar.update(1)
                bar.set_postfix_str(f"{self.clips_per_s:.1f} clips/s", refresh=False)
                waited_from = time.perf_counter()
        finally:
            bar.close()
        self.seconds = time.perf_counter() - self._start

    @property
    def clips_per_s(self):
        return self.clips / self.seconds if self.seconds > 0 else 0.0

    @property
    def data_share(self):
        return self.data_wait / self.seconds if self.seconds > 0 else 0.0

    def average(self, name):
        return self.sums[name] / max(self.steps, 1)

    def update(self, clips, **losses):
        """Record one finished step: `clips` seen and its loss values (Python floats)."""
        self.steps += 1
        self.clips += clips
        self.seconds = time.perf_counter() - self._start
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        if self.steps % self.run.opt.print_freq == 0 or self.steps == len(self.loader):
            values = " ".join(f"{name} {value:.4g} (avg {self.average(name):.4g})" for name, value in losses.items())
            left = (len(self.loader) - self.steps) * self.seconds / self.steps
            self.run.log.info(f"Train [{self.epoch}][{self.steps}/{len(self.loader)}] {values} lr {self.lr:.2e} | "
                              f"{self.clips_per_s:.1f} clips/s, data wait {100 * self.data_share:.0f}%, "
                              f"epoch ETA {_duration(left)}")

    def summary(self):
        return {"epoch": self.epoch, "steps": self.steps, "clips": self.clips, "seconds": round(self.seconds, 3),
                "data_wait_seconds": round(self.data_wait, 3), "clips_per_s": round(self.clips_per_s, 3)}


class Run:
    """A training run of stage 1 or 2; see the module docstring."""

    def __init__(self, opt, stage, dist, log, wandb_run, name, folder):
        self.opt, self.stage, self.dist, self.log, self.wandb = opt, stage, dist, log, wandb_run
        self.name, self.folder = name, folder
        self.device, self.is_main = dist.device, dist.is_main
        self.amp = amp_dtype(opt.amp, dist.device)
        self.start_epoch, self.best_error, self.best_epoch = 0, math.inf, -1
        self.epoch, self.step, self.saved_epoch = 0, 0, None  # where the run is, for the Ctrl-C line
        self.steps_in_epoch = 0
        self.timing = {"epochs": [], "validation": [], "final_report": None, "peak_gpu_memory_gib": None}
        self.written = []
        self.error_name = "MAE"  # what best.pth is chosen by (lower is better), as logged

    @classmethod
    def start(cls, opt, stage, name=None, folder=None, log=None):
        """Join the process group (under torchrun), seed, make the run folder, open the log and wandb.

        Optional, for runs that are not a training stage: `name` and `folder` replace the released run name
        and SAVE_ROOT/<name>; `log` is an open logger (utils.script.log.setup_logger) to write to instead of opening
        FOLDER/training.log, e.g. one log for several runs (the caller then logs the options itself)."""
        dist = init_distributed(opt.device)
        set_seed(opt.trial, opt.deterministic)
        name = name or run_name(opt, stage)
        folder = folder or os.path.join(opt.save_root, name)
        if dist.is_main:
            check_writable_folder(folder)
        barrier()
        own_log = log is None
        if own_log:
            log = setup_logger(os.path.join(folder, "training.log"), dist.is_main)
        if dist.device.type == "cuda":
            torch.backends.cudnn.benchmark = not opt.deterministic
        log.info(f"Run: {name} (stage {stage})")
        if own_log:
            log.info("Options:\n" + "\n".join(f"  {key}: {value}" for key, value in vars(opt).items()),
                     extra=FILE_ONLY)
            log.info(f"Device: {dist.device} x {dist.world_size} process(es); options in {folder}/training.log")
        run = cls(opt, stage, dist, log, init_wandb(opt, name, folder, opt.wandb and dist.is_main, log), name, folder)
        on_interrupt(run.interrupt_line)
        return run

    def path(self, filename):
        return os.path.join(self.folder, filename)

    def interrupt_line(self):
        saved = (f"last.pth holds epoch {self.saved_epoch}" if self.saved_epoch is not None
                 else "no last.pth written yet")
        return f"interrupted at epoch {self.epoch}, {self._where()}; {saved}; rerun with --resume"

    def _where(self):
        return f"step {self.step}" + (f"/{self.steps_in_epoch}" if self.steps_in_epoch else "")

    # ---------------------------------------------------------------- data

    def loader(self, train_set):
        """Shuffled training loader that drops the last incomplete batch (as released)."""
        loader = make_loader(train_set, self.opt.batch_size, self.opt.num_workers, self.dist, shuffle=True,
                             drop_last=True, seed=self.opt.trial, prefetch_factor=self.opt.prefetch_factor)
        if len(loader) == 0:
            raise BadInputError(f"{self.opt.data_folder}: {len(train_set)} training videos is fewer than "
                                f"--batch_size {self.opt.batch_size} x {self.dist.world_size} process(es); "
                                "lower --batch_size")
        return loader

    def training_epoch(self, epoch, loader, lr):
        """The iterator of one training epoch (also selects the epoch's shuffle and augmentations)."""
        self.epoch, self.step, self.steps_in_epoch = epoch, 0, len(loader)
        loader.sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        return EpochMeter(self, epoch, loader, lr)

    def check_finite(self, value, what):
        """`value` is a loss as a Python float (one host sync per loss, shared with the logging)."""
        if not math.isfinite(value):
            last = self.path("last.pth")
            kept = f"the last good checkpoint is {last}" if os.path.exists(last) else "no checkpoint was written yet"
            raise NonFiniteLossError(f"non-finite {what} ({value}) at epoch {self.epoch}, {self._where()}; "
                                     f"stopped without saving, {kept}")

    # ---------------------------------------------------------------- checkpoints

    def resume(self, model, regressor, optimizers, scaler):
        """With --resume, restore everything from last.pth; sets start_epoch and the best error so far."""
        if self.opt.resume is None:
            return
        path = self.path("last.pth") if self.opt.resume == "auto" else self.opt.resume
        self._check_shared(path)
        if self.opt.resume == "auto" and not os.path.exists(path):
            self.log.info("--resume: no last.pth in the run folder yet, starting from scratch")
            return
        checkpoint = load_checkpoint(path)
        if not isinstance(checkpoint, dict) or "resume" not in checkpoint:
            raise BadInputError(f"{path}: not a resumable last.pth of this project (no 'resume' entry)")
        state = checkpoint["resume"]
        if state.get("stage") != self.stage:
            raise BadInputError(f"{path}: a stage-{state.get('stage')} checkpoint cannot resume stage {self.stage}")
        self._warn_changed_options(checkpoint.get("opt"), path)
        load_state_dict_strict(model, checkpoint["model"], "model", path)
        load_state_dict_strict(regressor, checkpoint["regressor"], "regressor", path)
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state[name])
        if state["scaler"] or not scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        else:  # saved without a loss scaler (--amp none / bf16), resumed with --amp fp16: it starts afresh
            self.log.info("--resume: the checkpoint has no loss-scaler state (it ran without --amp fp16); "
                          "the fp16 loss scale starts from its default")
        self._restore_rng(state, path)
        self.start_epoch = self.epoch = checkpoint["epoch"] + 1
        self.best_error, self.best_epoch = state["best_error"], state["best_epoch"]
        self.saved_epoch = checkpoint["epoch"]
        self.timing = state.get("timing", self.timing)
        self._bring_best_checkpoint(path)
        self.log.info(f"Resumed from {path}: epoch {checkpoint['epoch']} done, best {self.error_name} "
                      f"{self.best_error:.3f} "
                      f"(epoch {self.best_epoch})")

    def _warn_changed_options(self, saved_opt, path):
        """A resumed run continues the interrupted one only with the same options: say which ones differ."""
        saved = vars(saved_opt) if isinstance(saved_opt, argparse.Namespace) else {}
        changed = [f"--{key} {saved[key]} -> {getattr(self.opt, key)}" for key in RESUME_OPTIONS
                   if key in saved and hasattr(self.opt, key) and saved[key] != getattr(self.opt, key)]
        if changed:
            self.log.warning(f"WARNING: --resume {path} with other options than it was trained with "
                             f"({', '.join(changed)}): the run will not be the one that was interrupted")

    def _check_shared(self, path):
        """Rank 0 alone writes checkpoints and every rank reads them: under torchrun they must see one file."""
        seen = gather_objects(os.path.exists(path))
        if len(set(seen)) > 1:
            raise MissingInputError(f"{path} exists for rank(s) {[r for r, s in enumerate(seen) if s]} but not for "
                                    f"the others: with several nodes --save_root must be on a file system every "
                                    "node shares")

    def _restore_rng(self, state, path):
        """Each process continues its own random streams (its own GPU's above all)."""
        states = state.get("rng_by_rank") or [state["rng"]]  # older last.pth: rank 0's only
        if len(states) != self.dist.world_size:
            self.log.warning(f"--resume: {path} was saved by {len(states)} process(es), this run has "
                             f"{self.dist.world_size}: random numbers (dropout, ...) will not continue exactly")
        set_rng_state(states[self.dist.rank] if self.dist.rank < len(states) else states[0], self.device)

    def _bring_best_checkpoint(self, path):
        """A last.pth from another folder brings its best.pth along: the best error restored with it refers to
        that file, and the final report scores best.pth of this folder."""
        source = os.path.join(os.path.dirname(os.path.abspath(path)), "best.pth")
        target = os.path.abspath(self.path("best.pth"))
        if source == target:
            return
        if not os.path.isfile(source):
            raise MissingInputError(f"--resume {path}: its run's best.pth ({source}) is missing; the final report "
                                    "scores the best checkpoint, so it must lie beside last.pth")
        if self.is_main:
            self._save("best.pth", lambda: atomic_copy(source, target))
        barrier()
        self.log.info(f"--resume: copied {source} (best {self.error_name} {self.best_error:.3f}, epoch "
                      f"{self.best_epoch}) into {self.folder}")

    def released_opt(self):
        """The options as the released scripts store them in last.pth (with their derived attributes)."""
        return argparse.Namespace(**vars(self.opt), optim="adamw", model_path=self.opt.save_root,
                                  model_name=self.name, save_folder=self.folder)

    def _save(self, what, write):
        try:
            write()
        except OutputError as e:
            kept = (f"last.pth (epoch {self.saved_epoch}) is intact" if self.saved_epoch is not None
                    else "no checkpoint was written yet")
            raise OutputError(f"{e}; {kept}; fix that (free space, permissions) and rerun with --resume",
                              errno=e.errno) from None
        if what not in self.written:
            self.written.append(what)

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, model, regressor, dataset, desc):
        """(metrics, result, seconds) of the clip-averaged predictions on `dataset`."""
        start = time.perf_counter()
        metrics, result = evaluate(model, regressor, dataset, self.dist, batch_size=self.opt.batch_size,
                                   num_workers=self.opt.num_workers, amp=self.amp,
                                   channels_last=self.opt.channels_last,
                                   progress=lambda iterable, total: tqdm(iterable, total=total, desc=desc,
                                                                         leave=False, disable=None if self.is_main
                                                                         else True))
        return metrics, result, time.perf_counter() - start

    def end_epoch(self, epoch, meter, model, regressor, val_set, resume_state, evaluate=None):
        """Validate, keep best.pth (by validation MAE, ties -> later epoch, as released), then last.pth.

        `evaluate`: optional callable (model, regressor) -> (metrics, result, seconds) that replaces the
        clip-averaged EF evaluation of `val_set` (pass val_set=None then). best.pth is then chosen by
        metrics["error"] (lower is better; name it in `run.error_name`); the other numbers of `metrics` are
        logged; `result` may hold "clip_predictions" (counted as clips) and, for EF labels, "embeddings" and
        "labels" (their ordering metrics are logged)."""
        broadcast_buffers(model, regressor)  # validate on every rank the model that best.pth / last.pth keep
        if evaluate is None:
            metrics, result, seconds = self.evaluate(model, regressor, val_set, f"val {epoch}")
            error, text = metrics["mae"], format_metrics(metrics)
        else:
            metrics, result, seconds = evaluate(model, regressor)
            error = float(metrics["error"])
            text = "  ".join(f"{key} {value:.4g}" for key, value in metrics.items()
                             if isinstance(value, (int, float)) and key != "error")
        is_best = error <= self.best_error
        if is_best:
            self.best_error, self.best_epoch = error, epoch
        epoch_seconds = meter.seconds + seconds
        left = (self.opt.epochs - epoch) * epoch_seconds
        self.log.info(f"Epoch {epoch}: {meter.clips_per_s:.1f} clips/s, data wait {100 * meter.data_share:.0f}%, "
                      f"{_duration(epoch_seconds)} with validation; run ETA {_duration(left)}")
        self.log.info(f"Epoch {epoch} validation: {text} | "
                      f"best {self.error_name} {self.best_error:.3f} (epoch {self.best_epoch})")
        ordering = {}
        if "embeddings" in result and "labels" in result:
            ordering = representation_metrics(result["embeddings"], result["labels"])
            self.log.info(f"Epoch {epoch} validation embeddings: {format_representation_metrics(ordering)}")
        clips = sum(np.size(p) for p in result.get("clip_predictions", ()))  # an array [N, n] or N arrays
        self.timing["epochs"].append(meter.summary())
        self.timing["validation"].append({"epoch": epoch, "clips": int(clips), "seconds": round(seconds, 3)})
        if self.device.type == "cuda":
            self.timing["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
        rng_by_rank = gather_objects(get_rng_state(self.device))  # every process saves its own streams
        if self.is_main:
            if self.wandb is not None:
                named = ({"Val R2": metrics["r2"], "Val L2": metrics["rmse"], "Val L1": metrics["mae"]}
                         if evaluate is None else {f"Val {key}": value for key, value in metrics.items()
                                                   if isinstance(value, (int, float))})
                self.wandb.log({"epoch": epoch, "lr": meter.lr, **named, "clips/s": meter.clips_per_s,
                                **{f"Val embedding {name}": value for name, value in ordering.items()},
                                **{f"train {name}": meter.average(name) for name in meter.sums}}, step=epoch)
                if ordering:
                    log_images(self.wandb, embedding_maps(projection.projections(result["embeddings"]),
                                                          result["labels"], "Val",
                                                          title=f"val split, stage {self.stage}, epoch {epoch}"),
                               step=epoch)
            # best.pth first: a crash between the two writes leaves best.pth current and last.pth one epoch older.
            if is_best:
                self._save("best.pth", lambda: save_best(self.path("best.pth"), model, regressor, epoch, error))
            resume_state.update(stage=self.stage, best_error=self.best_error, best_epoch=self.best_epoch,
                                rng=rng_by_rank[0], rng_by_rank=rng_by_rank, timing=self.timing)
            # As released, stage 2's last.pth stores best_error None (the resume state keeps the real value).
            self._save("last.pth", lambda: save_last(self.path("last.pth"), self.released_opt(), model, regressor,
                                                     epoch, self.best_error if self.stage == 1 else None,
                                                     resume_state))
            self._save("timing.json", lambda: atomic_write_json(self.timing, self.path("timing.json")))
        self.saved_epoch = epoch
        barrier()
        return metrics

    def finish(self, model, regressor, report_sets):
        """Evaluate best.pth on test, val and train (`report_sets`: split -> dataset of fixed clips, no
        augmentation), as the released scripts do; write final_metrics.json and the test t-SNE figure."""
        best_path = self.path("best.pth")
        self._check_shared(best_path)
        checkpoint = load_checkpoint(best_path)
        load_state_dict_strict(model, checkpoint["model"], "model", best_path)
        load_state_dict_strict(regressor, checkpoint["regressor"], "regressor", best_path)
        self.log.info("=" * 100)
        self.log.info(f"Best checkpoint: epoch {checkpoint['epoch']}, "
                      f"validation MAE {float(checkpoint['best_error']):.3f}")
        report, figures, total_clips, total_seconds = {"best_epoch": int(checkpoint["epoch"])}, {}, 0, 0.0
        for split in ("test", "val", "train"):
            metrics, result, seconds = self.evaluate(model, regressor, report_sets[split], split)
            report[split] = {**metrics, "embeddings": representation_metrics(result["embeddings"], result["labels"])}
            total_clips, total_seconds = total_clips + int(result["clip_predictions"].size), total_seconds + seconds
            self.log.info(f"{split.capitalize():5s} {format_metrics(metrics)}  "
                          f"({len(result['names'])} videos, {seconds:.0f}s); embeddings: "
                          f"{format_representation_metrics(report[split]['embeddings'])}")
            title = f"{split} split, stage {self.stage} best (epoch {checkpoint['epoch']})"
            if self.wandb is not None:
                figures.update(embedding_maps(projection.projections(result["embeddings"]), result["labels"],
                                              f"(Best) {split.capitalize()}", title=title))
            if self.is_main and split == "test":  # the wandb t-SNE when there is one: computed once
                tsne = figures.get("(Best) Test TSNE (ef)")
                if tsne is None:
                    tsne = embedding_map(projection.project(result["embeddings"], "tsne"), result["labels"], "tsne",
                                         title=title)
                self._save("test_embeddings_tsne.png", lambda: save_figure(
                    tsne, self.path("test_embeddings_tsne.png"), close=self.wandb is None))
        self.timing["final_report"] = {"clips": total_clips, "seconds": round(total_seconds, 3)}
        if self.is_main:
            self._save("final_metrics.json", lambda: atomic_write_json(report, self.path("final_metrics.json")))
            self._save("timing.json", lambda: atomic_write_json(self.timing, self.path("timing.json")))
            if self.wandb is not None:
                names = (("R2", "r2"), ("L2", "rmse"), ("L1", "mae"))
                self.wandb.log({f"(Best) {split.capitalize()} {name}": report[split][key]
                                for split in ("test", "val", "train") for name, key in names})
                log_images(self.wandb, figures)
                self.wandb.finish()
        files = ["training.log"] + [name for name in self.written if name != "training.log"]
        self.log.info(f"Saved in {self.folder}: {', '.join(files)}")
        cleanup()
        return report
