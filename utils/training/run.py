"""A training run's set-up: process group, device, AMP, folder, log, wandb; its shuffled loader, the start
of each epoch, the SIGTERM agreement between ranks and the one line printed when the run is interrupted.

The loop itself stays in the script; `Run` holds what is set up once and never calls back into the loop.
"""
import argparse
import math
import os
import signal

import torch
import torch.distributed

from utils.engine.amp import amp_dtype
from utils.engine.distributed import barrier, init_distributed
from utils.engine.loaders import make_loader
from utils.files.atomic import check_writable_folder
from utils.script.cli import Interrupted, defer_sigterm, on_interrupt, sigterm_pending
from utils.script.errors import BadInputError, NonFiniteLossError
from utils.script.log import FILE_ONLY, setup_logger
from utils.script.options import run_name
from utils.training.meter import EpochMeter
from utils.training.wandb_logger import init_wandb


class Run:
    """Where a run of stage 1, 2 (or a fine-tune fold) lives: `dist`, `device`, `is_main`, `amp`, `log`,
    `wandb`, `name`, `folder`."""

    def __init__(self, opt, stage, dist, log, wandb_run, name, folder, seed=None):
        self.opt, self.stage, self.dist, self.log, self.wandb = opt, stage, dist, log, wandb_run
        self.name, self.folder = name, folder
        self.device, self.is_main = dist.device, dist.is_main
        self.amp = amp_dtype(opt.amp, dist.device)
        self.seed = opt.trial if seed is None else seed

    @classmethod
    def start(cls, opt, stage, name=None, folder=None, log=None, seed=None):
        """Join the process group (under torchrun), make the run folder, open the log and wandb. The script
        seeds (utils.engine.seed.set_seed) itself, before it builds what the seed must make the same.

        Optional, for runs that are not a training stage: `name` and `folder` replace the released run name and
        SAVE_ROOT/<name>; `log` is an open logger to write to instead of FOLDER/training.log (the caller then
        logs the options itself, and wandb stays off); `seed` replaces opt.trial for the loader's shuffle."""
        dist = init_distributed(opt.device)
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
        wandb_run = init_wandb(opt, name, folder, own_log and opt.wandb and dist.is_main, log)
        return cls(opt, stage, dist, log, wandb_run, name, folder, seed)

    def path(self, filename):
        return os.path.join(self.folder, filename)

    def loader(self, train_set):
        """Shuffled training loader that drops the last incomplete batch (as released); the same batches for
        any --num_workers (shuffled by trial and epoch)."""
        opt = self.opt
        loader = make_loader(train_set, opt.batch_size, opt.num_workers, self.dist, training=True,
                             seed=self.seed, prefetch_factor=opt.prefetch_factor)
        if len(loader) == 0:
            raise BadInputError(f"{opt.data_folder}: {len(train_set)} training videos is fewer than "
                                f"--batch_size {opt.batch_size} x {self.dist.world_size} process(es); "
                                "lower --batch_size")
        return loader

    def training_epoch(self, epoch, loader, lr, resumed, saver):
        """The meter of epoch `epoch`, to iterate (also selects the epoch's shuffle and augmentations).

        A run resumed in the middle of this epoch starts after the last saved step: the batches before are not
        loaded again, and every sample's randomness is drawn from (trial, epoch, index), so the steps left are
        the uninterrupted run's. From here until `end_epoch` a SIGTERM only stops the run after a step."""
        loader.sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        loader.sampler.skip = 0
        done = resumed.take_position(epoch, len(loader), self.log)
        if done is not None:
            loader.sampler.skip = min(done["steps"], len(loader)) * loader.batch_size
        meter = EpochMeter(epoch, loader, lr, len(loader), done, show=self.is_main)
        on_interrupt(lambda: f"interrupted at epoch {epoch}, {meter.where()}; {saver.hint()}", saver.hint)
        defer_sigterm(True)
        return meter

    def check_finite(self, value, what, meter):
        """`value` is a loss as a Python float (one host sync per loss, shared with the logging)."""
        if not math.isfinite(value):
            last = self.path("last.pth")
            kept = f"the last good checkpoint is {last}" if os.path.exists(last) else "no checkpoint was written yet"
            raise NonFiniteLossError(f"non-finite {what} ({value}) at epoch {meter.epoch}, {meter.where()}; "
                                     f"stopped without saving, {kept}")

    def step_done(self, meter, saver, save_every_steps=0):
        """After each step: the log line every --print_freq steps; last.pth part-way every `save_every_steps`
        steps and when a SIGTERM came, which then stops the run (every rank after the same step)."""
        if meter.steps % self.opt.print_freq == 0 or meter.steps == meter.total:
            self.log.info(meter.line())
        stop = stop_asked(self.dist)
        if stop or meter.every(save_every_steps):
            saver.save_last(meter.epoch, position=meter.position())
        if stop:
            raise Interrupted(signal.SIGTERM)

    def end_epoch(self, saver, epoch):
        """The epoch's last.pth; then a SIGTERM that came during validation stops the run here."""
        saver.save_last(epoch)
        if stop_asked(self.dist):
            raise Interrupted(signal.SIGTERM)
        defer_sigterm(False)

    def released_opt(self):
        """The options as the released scripts store them in last.pth (with their derived attributes)."""
        save_root = getattr(self.opt, "save_root", os.path.dirname(self.folder))  # a fine-tune fold has none
        return argparse.Namespace(**vars(self.opt), optim="adamw", model_path=save_root,
                                  model_name=self.name, save_folder=self.folder)


def stop_asked(dist):
    """Whether a SIGTERM came to any process: under torchrun every rank asks after the same step, so all stop
    after that step."""
    stop = sigterm_pending()
    if dist.enabled:
        flag = torch.tensor([int(stop)], device=dist.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        stop = bool(flag.item())
    return stop
