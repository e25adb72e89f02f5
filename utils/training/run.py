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
import signal
import time

import numpy as np
import torch
import torch.distributed
from tqdm import tqdm

from utils.files.checkpoint import load_checkpoint, load_state_dict_strict, save_best, save_last
from utils.script.cli import Interrupted, defer_sigterm, on_interrupt, sigterm_pending
from utils.engine.distributed import barrier, broadcast_buffers, cleanup, gather_objects, init_distributed
from utils.script.errors import BadInputError, MissingInputError, NonFiniteLossError, OutputError
from utils.evaluation.inference import InferenceSettings, evaluate
from utils.files.atomic import atomic_copy, atomic_write_json, check_writable_folder
from utils.script.log import FILE_ONLY, setup_logger
from utils.evaluation import projection
from utils.evaluation.metrics import format_metrics
from utils.script.options import run_name
from utils.pictures.plots import embedding_map, embedding_maps, save_figure
from utils.evaluation.representation import format_representation_metrics, representation_metrics
from utils.engine.amp import amp_dtype
from utils.engine.loaders import make_loader
from utils.engine.seed import get_rng_state, set_rng_state, set_seed
from utils.training.epoch import EpochMeter, duration
from utils.training.wandb_logger import init_wandb, log_images


# Options that shape a run's results: a resume with others still works, with a warning (--epochs may change).
RESUME_OPTIONS = ("model", "frames", "frequency", "batch_size", "learning_rate", "weight_decay", "lr_decay_rate",
                  "lr_step_epoch", "temp", "label_diff", "feature_sim", "aug", "trial", "amp", "depthwise",
                  "val_n_clips_per_sample", "sync_bn", "data_folder")


class Run:
    """A training run of stage 1 or 2; see the module docstring."""

    def __init__(self, opt, stage, dist, log, wandb_run, name, folder):
        self.opt, self.stage, self.dist, self.log, self.wandb = opt, stage, dist, log, wandb_run
        self.name, self.folder = name, folder
        self.device, self.is_main = dist.device, dist.is_main
        self.amp = amp_dtype(opt.amp, dist.device)
        self.start_epoch, self.best_error, self.best_epoch = 0, math.inf, -1
        self.epoch, self.step, self.steps_in_epoch = 0, 0, 0  # where the run is, for the Ctrl-C line
        self.saved_epoch, self.saved_step = None, None  # what last.pth holds: epoch, and (step, steps) if part-way
        self.reporting = False
        self._trained = None  # (model, regressor, optimizers, scaler): what a last.pth in mid-epoch holds
        self._position = None  # where a resumed run starts within its first epoch
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
        on_interrupt(run.interrupt_line, run.resume_hint)
        return run

    def path(self, filename):
        return os.path.join(self.folder, filename)

    def interrupt_line(self):
        where = "during the final report" if self.reporting else f"at epoch {self.epoch}, {self._where()}"
        return f"interrupted {where}; {self.resume_hint()}"

    def resume_hint(self):
        """What last.pth holds, and the flag that goes on from there."""
        if self.saved_epoch is None:
            return "no last.pth written yet; rerun with --resume"
        part = f" up to step {self.saved_step[0]}/{self.saved_step[1]}" if self.saved_step else ""
        return f"last.pth holds epoch {self.saved_epoch}{part}; rerun with --resume"

    def _where(self):
        return f"step {self.step}" + (f"/{self.steps_in_epoch}" if self.steps_in_epoch else "")

    # ---------------------------------------------------------------- data

    def loader(self, train_set):
        """Shuffled training loader that drops the last incomplete batch (as released)."""
        loader = make_loader(train_set, self.opt.batch_size, self.opt.num_workers, self.dist, training=True,
                             seed=self.opt.trial, prefetch_factor=self.opt.prefetch_factor)
        if len(loader) == 0:
            raise BadInputError(f"{self.opt.data_folder}: {len(train_set)} training videos is fewer than "
                                f"--batch_size {self.opt.batch_size} x {self.dist.world_size} process(es); "
                                "lower --batch_size")
        return loader

    def training_epoch(self, epoch, loader, lr):
        """The iterator of one training epoch (also selects the epoch's shuffle and augmentations). A run resumed
        from a last.pth written in the middle of this epoch starts after its last step: the batches before are
        not loaded again, and every sample's randomness is drawn from (trial, epoch, index), so the steps left
        are the uninterrupted run's. From here to the end of `end_epoch` a SIGTERM stops after the step."""
        loader.sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        loader.sampler.skip = 0
        self.epoch, self.step, self.steps_in_epoch = epoch, 0, len(loader)
        done = None
        if self._position is not None and self._position["epoch"] == epoch:
            done, steps = self._position["meter"], self._position["steps"]
            if steps != len(loader):
                self.log.warning(f"WARNING: epoch {epoch} has {len(loader)} steps, the interrupted run had {steps}: "
                                 f"it goes on after step {done['steps']} all the same, not as that run would have")
            loader.sampler.skip = min(done["steps"], len(loader)) * loader.batch_size
            self.step, self._position = done["steps"], None
        defer_sigterm(True)
        return EpochMeter(self, epoch, loader, lr, self.steps_in_epoch, done)

    def after_step(self, meter):
        """Called by the epoch's iterator after each step: writes the periodic last.pth (--save_every_steps) and
        stops the run when a SIGTERM came (after saving where it is)."""
        every = getattr(self.opt, "save_every_steps", 0)
        stop = self._stop_agreed()
        if stop or (every and meter.steps % every == 0 and meter.steps < meter.total):
            self._save_position(meter)
        if stop:
            raise Interrupted(signal.SIGTERM)

    def _stop_agreed(self):
        """Whether a SIGTERM came to any process: under torchrun every rank asks after the same step, so all
        stop after that step."""
        stop = sigterm_pending()
        if self.dist.enabled:
            flag = torch.tensor([int(stop)], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def check_finite(self, value, what):
        """`value` is a loss as a Python float (one host sync per loss, shared with the logging)."""
        if not math.isfinite(value):
            last = self.path("last.pth")
            kept = f"the last good checkpoint is {last}" if os.path.exists(last) else "no checkpoint was written yet"
            raise NonFiniteLossError(f"non-finite {what} ({value}) at epoch {self.epoch}, {self._where()}; "
                                     f"stopped without saving, {kept}")

    # ---------------------------------------------------------------- checkpoints

    def resume(self, model, regressor, optimizers, scaler):
        """With --resume, restore everything from last.pth; sets start_epoch and the best error so far. The
        arguments are also what a last.pth written in the middle of an epoch (SIGTERM, --save_every_steps) holds."""
        self._trained = (model, regressor, optimizers, scaler)
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
        self._position = state.get("position")  # written in the middle of this epoch: it goes on from there
        self.start_epoch = self.epoch = checkpoint["epoch"] + (0 if self._position else 1)
        self.best_error, self.best_epoch = state["best_error"], state["best_epoch"]
        self.saved_epoch = checkpoint["epoch"]
        self.saved_step = (self._position["step"], self._position["steps"]) if self._position else None
        self.timing = state.get("timing", self.timing)
        self._bring_best_checkpoint(path)
        done = f"epoch {self.saved_epoch} " + (f"up to step {self.saved_step[0]}/{self.saved_step[1]}"
                                               if self.saved_step else "done")
        best = (f"best {self.error_name} {self.best_error:.3f} (epoch {self.best_epoch})" if self.best_epoch >= 0
                else "not validated yet")
        self.log.info(f"Resumed from {path}: {done}, {best}")

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
        if source == target or self.best_epoch < 0:  # stopped before its first validation: no best.pth yet
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
            step = f", step {self.saved_step[0]}/{self.saved_step[1]}" if self.saved_step else ""
            kept = (f"last.pth (epoch {self.saved_epoch}{step}) is intact" if self.saved_epoch is not None
                    else "no checkpoint was written yet")
            raise OutputError(f"{e}; {kept}; fix that (free space, permissions) and rerun with --resume",
                              errno=e.errno) from None
        if what not in self.written:
            self.written.append(what)

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, model, regressor, dataset, desc):
        """(metrics, result, seconds) of the clip-averaged predictions on `dataset`."""
        start = time.perf_counter()
        settings = InferenceSettings(self.amp, self.opt.channels_last, max_videos=self.opt.batch_size,
                                     num_workers=self.opt.num_workers)
        metrics, result = evaluate(model, regressor, dataset, self.dist, settings,
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
                      f"{duration(epoch_seconds)} with validation; run ETA {duration(left)}")
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
            self._write_last(model, regressor, epoch, resume_state, rng_by_rank)
            self._save("timing.json", lambda: atomic_write_json(self.timing, self.path("timing.json")))
        self.saved_epoch, self.saved_step = epoch, None
        barrier()
        if self._stop_agreed():  # a SIGTERM during validation: the epoch is saved whole
            raise Interrupted(signal.SIGTERM)
        defer_sigterm(False)
        return metrics

    def _write_last(self, model, regressor, epoch, resume_state, rng_by_rank):
        resume_state.update(stage=self.stage, best_error=self.best_error, best_epoch=self.best_epoch,
                            rng=rng_by_rank[0], rng_by_rank=rng_by_rank, timing=self.timing)
        # As released, stage 2's last.pth stores best_error None (the resume state keeps the real value).
        self._save("last.pth", lambda: save_last(self.path("last.pth"), self.released_opt(), model, regressor,
                                                 epoch, self.best_error if self.stage == 1 else None, resume_state))

    def _save_position(self, meter):
        """last.pth in the middle of an epoch: the model, optimisers and random streams after `meter.steps`
        steps of epoch `meter.epoch`, the position and the epoch's numbers so far (under 'resume')."""
        if self._trained is None:  # a loop that never called resume(): only whole epochs are saved
            return
        model, regressor, optimizers, scaler = self._trained
        rng_by_rank = gather_objects(get_rng_state(self.device))  # every process saves its own streams
        if self.is_main:
            state = {name: optimizer.state_dict() for name, optimizer in optimizers.items()}
            state.update(scaler=scaler.state_dict(), position={"epoch": meter.epoch, "step": meter.steps,
                                                               "steps": meter.total, "meter": meter.state()})
            self._write_last(model, regressor, meter.epoch, state, rng_by_rank)
        self.saved_epoch, self.saved_step = meter.epoch, (meter.steps, meter.total)
        barrier()

    def finish(self, model, regressor, report_sets):
        """Evaluate best.pth on test, val and train (`report_sets`: split -> dataset of fixed clips, no
        augmentation), as the released scripts do; write final_metrics.json and the test t-SNE figure."""
        best_path = self.path("best.pth")
        self.reporting = True
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
