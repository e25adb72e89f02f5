"""The checkpoint saver, built from what it saves (model, regressor, optimisers, loss scaler) and called by the
training loop: best.pth after validation, last.pth after each epoch and part-way (SIGTERM, --save_every_steps).

Rank 0 writes; `save_last` is collective under torchrun (every rank gives its random streams). Every write goes
through `write`, so that a full disk or a permission error says which last.pth is still intact.
"""
import math

from utils.engine.distributed import barrier
from utils.files.atomic import atomic_write_json
from utils.files.checkpoint import save_best, save_last
from utils.script.errors import OutputError
from utils.training.resume import resume_state


class CheckpointSaver:
    """best.pth (lowest error, ties -> the later epoch, as released) and last.pth of `run`; `scaler` optional.
    `error_name` names what best.pth is chosen by (lower is better), as logged."""

    def __init__(self, run, model, regressor, optimizers, scaler=None, error_name="MAE", settings=None):
        self.run, self.model, self.regressor = run, model, regressor
        self.optimizers, self.scaler, self.error_name = optimizers, scaler, error_name
        self.settings = settings  # what scoring needs (models.settings.training_settings), in every checkpoint
        self.best_error, self.best_epoch = math.inf, -1
        self.best_metrics = None  # the validation metrics of best.pth, when this process saw them
        self.saved_epoch, self.saved_step = None, None  # what last.pth holds: epoch, and (step, steps) if part-way
        self.timing = {"epochs": [], "validation": [], "final_report": None, "peak_gpu_memory_gib": None}
        self.written = []

    def hint(self):
        """What last.pth holds, and the flag that goes on from there."""
        if self.saved_epoch is None:
            return "no last.pth written yet; rerun with --resume"
        part = f" up to step {self.saved_step[0]}/{self.saved_step[1]}" if self.saved_step else ""
        return f"last.pth holds epoch {self.saved_epoch}{part}; rerun with --resume"

    def save_best(self, epoch, error, metrics=None):
        """When `error` of `epoch` is the best so far (ties -> the later epoch, as released), keep it (and its
        validation `metrics`, a dict of numbers, for the settings) and write best.pth with the weights of now
        (rank 0)."""
        if error > self.best_error:
            return
        self.best_error, self.best_epoch = error, epoch
        self.best_metrics = plain_numbers(metrics if metrics is not None else {self.error_name.lower(): error})
        if self.run.is_main:
            settings = self.checkpoint_settings(epoch=epoch)
            self.write("best.pth", lambda: save_best(self.run.path("best.pth"), self.model, self.regressor, epoch,
                                                     error, settings))

    def checkpoint_settings(self, **extra):
        """The run's settings with the best epoch's validation metrics (None when the run has no settings)."""
        if self.settings is None:
            return None
        settings = {**self.settings, **extra, "best_epoch": self.best_epoch}
        if self.best_metrics is not None:
            settings["metrics"] = self.best_metrics
        return settings

    def save_last(self, epoch, position=None):
        """last.pth after epoch `epoch`, or part-way through it at `position` (EpochMeter.position()); at an
        epoch's end timing.json too. As released, stage 2's last.pth stores best_error None (the resume state
        keeps the real value)."""
        run = self.run
        state = resume_state(self, run.stage, run.device, position)
        if run.is_main:
            best = self.best_error if run.stage == 1 else None
            settings = self.checkpoint_settings(epoch=epoch)
            self.write("last.pth", lambda: save_last(run.path("last.pth"), run.released_opt(), self.model,
                                                     self.regressor, epoch, best, state, settings))
            if position is None:
                self.write("timing.json", lambda: atomic_write_json(self.timing, run.path("timing.json")))
        self.saved_epoch, self.saved_step = epoch, (position["step"], position["steps"]) if position else None
        barrier()

    def write(self, name, write):
        """Run `write()`, which writes `name` in the run folder; an OutputError says what is intact."""
        try:
            write()
        except OutputError as e:
            step = f", step {self.saved_step[0]}/{self.saved_step[1]}" if self.saved_step else ""
            kept = (f"last.pth (epoch {self.saved_epoch}{step}) is intact" if self.saved_epoch is not None
                    else "no checkpoint was written yet")
            raise OutputError(f"{e}; {kept}; fix that (free space, permissions) and rerun with --resume",
                              errno=e.errno) from None
        if name not in self.written:
            self.written.append(name)


def plain_numbers(metrics) -> dict:
    """{name: float} of the finite numbers among `metrics` (numpy and 0-d tensor values too): plain data that
    torch.load(weights_only=True) and JSON both read."""
    numbers = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError, RuntimeError):  # lists, strings, tensors of several values
            continue
        if math.isfinite(number):
            numbers[str(name)] = number
    return numbers
