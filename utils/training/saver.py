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

    def __init__(self, run, model, regressor, optimizers, scaler=None, error_name="MAE"):
        self.run, self.model, self.regressor = run, model, regressor
        self.optimizers, self.scaler, self.error_name = optimizers, scaler, error_name
        self.best_error, self.best_epoch = math.inf, -1
        self.saved_epoch, self.saved_step = None, None  # what last.pth holds: epoch, and (step, steps) if part-way
        self.timing = {"epochs": [], "validation": [], "final_report": None, "peak_gpu_memory_gib": None}
        self.written = []

    def hint(self):
        """What last.pth holds, and the flag that goes on from there."""
        if self.saved_epoch is None:
            return "no last.pth written yet; rerun with --resume"
        part = f" up to step {self.saved_step[0]}/{self.saved_step[1]}" if self.saved_step else ""
        return f"last.pth holds epoch {self.saved_epoch}{part}; rerun with --resume"

    def save_best(self, epoch, error):
        """When `error` of `epoch` is the best so far (ties -> the later epoch, as released), keep it and write
        best.pth with the weights of now (rank 0)."""
        if error > self.best_error:
            return
        self.best_error, self.best_epoch = error, epoch
        if self.run.is_main:
            self.write("best.pth", lambda: save_best(self.run.path("best.pth"), self.model, self.regressor, epoch,
                                                     error))

    def save_last(self, epoch, position=None):
        """last.pth after epoch `epoch`, or part-way through it at `position` (EpochMeter.position()); at an
        epoch's end timing.json too. As released, stage 2's last.pth stores best_error None (the resume state
        keeps the real value)."""
        run = self.run
        state = resume_state(self, run.stage, run.device, position)
        if run.is_main:
            best = self.best_error if run.stage == 1 else None
            self.write("last.pth", lambda: save_last(run.path("last.pth"), run.released_opt(), self.model,
                                                     self.regressor, epoch, best, state))
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
