"""Resume state, built and read in this one place: last.pth's 'resume' entry (optimisers, loss scaler, every
rank's random streams, best error, timing and, part-way through an epoch, the position) and --resume."""
import argparse
import os

from utils.engine.distributed import barrier, gather_objects
from utils.engine.seed import get_rng_state, set_rng_state
from utils.files.atomic import atomic_copy
from utils.files.checkpoint import load_checkpoint, load_state_dict_strict
from utils.script.cli import on_interrupt
from utils.script.errors import BadInputError, MissingInputError

# Options that shape a run's results: a resume with others still works, with a warning (--epochs may change).
RESUME_OPTIONS = ("model", "frames", "frequency", "batch_size", "learning_rate", "weight_decay", "lr_decay_rate",
                  "lr_step_epoch", "temp", "label_diff", "feature_sim", "aug", "trial", "amp", "depthwise",
                  "val_n_clips_per_sample", "sync_bn", "data_folder")


def resume_state(saver, stage, device, position=None):
    """last.pth's 'resume' entry. Collective under torchrun: every process gives its own random streams."""
    rng_by_rank = gather_objects(get_rng_state(device))
    state = {name: optimizer.state_dict() for name, optimizer in saver.optimizers.items()}
    state["scaler"] = saver.scaler.state_dict() if saver.scaler is not None else {}  # {}: as a disabled scaler
    if position is not None:
        state["position"] = position
    state.update(stage=stage, best_error=saver.best_error, best_epoch=saver.best_epoch, rng=rng_by_rank[0],
                 rng_by_rank=rng_by_rank, timing=saver.timing)
    return state


class Resumed:
    """Where the run starts: `start_epoch`, and the position inside it when last.pth was written part-way."""

    def __init__(self, start_epoch=0, position=None):
        self.start_epoch, self.position = start_epoch, position

    def take_position(self, epoch, steps, log):
        """The meter state of the steps already done in `epoch` (once), or None."""
        if self.position is None or self.position["epoch"] != epoch:
            return None
        done, saved_steps = self.position["meter"], self.position["steps"]
        if saved_steps != steps:
            log.warning(f"WARNING: epoch {epoch} has {steps} steps, the interrupted run had {saved_steps}: "
                        f"it goes on after step {done['steps']} all the same, not as that run would have")
        self.position = None
        return done


def resume(run, saver, spec):
    """With `spec` ('auto': the run folder's last.pth, or a path; None: no resume) restore what `saver` saves
    (model, regressor, optimisers, scaler, best error, timing) and the random streams."""
    resumed = restore(run, saver, spec)
    on_interrupt(lambda: f"interrupted at epoch {resumed.start_epoch}, before its first step; {saver.hint()}",
                 saver.hint)
    return resumed


def restore(run, saver, spec):
    if spec is None:
        return Resumed()
    path = run.path("last.pth") if spec == "auto" else spec
    check_shared(path)
    if spec == "auto" and not os.path.exists(path):
        run.log.info("--resume: no last.pth in the run folder yet, starting from scratch")
        return Resumed()
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, dict) or "resume" not in checkpoint:
        raise BadInputError(f"{path}: not a resumable last.pth of this project (no 'resume' entry)")
    state = checkpoint["resume"]
    if state.get("stage") != run.stage:
        raise BadInputError(f"{path}: a stage-{state.get('stage')} checkpoint cannot resume stage {run.stage}")
    warn_changed_options(run, checkpoint.get("opt"), path)
    load_state_dict_strict(saver.model, checkpoint["model"], "model", path)
    load_state_dict_strict(saver.regressor, checkpoint["regressor"], "regressor", path)
    for name, optimizer in saver.optimizers.items():
        optimizer.load_state_dict(state[name])
    if saver.scaler is not None:
        if state["scaler"] or not saver.scaler.is_enabled():
            saver.scaler.load_state_dict(state["scaler"])
        else:  # saved without a loss scaler (--amp none / bf16), resumed with --amp fp16: it starts afresh
            run.log.info("--resume: the checkpoint has no loss-scaler state (it ran without --amp fp16); "
                         "the fp16 loss scale starts from its default")
    restore_rng(state, run.dist, run.log, path)
    position = state.get("position")  # written in the middle of this epoch: it goes on from there
    saver.best_error, saver.best_epoch = state["best_error"], state["best_epoch"]
    saver.saved_epoch = checkpoint["epoch"]
    saver.saved_step = (position["step"], position["steps"]) if position else None
    saver.timing = state.get("timing", saver.timing)
    bring_best_checkpoint(run, saver, path)
    done = f"epoch {saver.saved_epoch} " + (f"up to step {position['step']}/{position['steps']}" if position
                                            else "done")
    best = (f"best {saver.error_name} {saver.best_error:.3f} (epoch {saver.best_epoch})" if saver.best_epoch >= 0
            else "not validated yet")
    run.log.info(f"Resumed from {path}: {done}, {best}")
    return Resumed(checkpoint["epoch"] + (0 if position else 1), position)


def warn_changed_options(run, saved_opt, path):
    """A resumed run continues the interrupted one only with the same options: say which ones differ."""
    saved = vars(saved_opt) if isinstance(saved_opt, argparse.Namespace) else {}
    changed = [f"--{key} {saved[key]} -> {getattr(run.opt, key)}" for key in RESUME_OPTIONS
               if key in saved and hasattr(run.opt, key) and saved[key] != getattr(run.opt, key)]
    if changed:
        run.log.warning(f"WARNING: --resume {path} with other options than it was trained with "
                        f"({', '.join(changed)}): the run will not be the one that was interrupted")


def check_shared(path):
    """Rank 0 alone writes checkpoints and every rank reads them: under torchrun they must see one file."""
    seen = gather_objects(os.path.exists(path))
    if len(set(seen)) > 1:
        raise MissingInputError(f"{path} exists for rank(s) {[r for r, s in enumerate(seen) if s]} but not for "
                                f"the others: with several nodes --save_root must be on a file system every "
                                "node shares")


def restore_rng(state, dist, log, path):
    """Each process continues its own random streams (its own GPU's above all)."""
    states = state.get("rng_by_rank") or [state["rng"]]  # older last.pth: rank 0's only
    if len(states) != dist.world_size:
        log.warning(f"--resume: {path} was saved by {len(states)} process(es), this run has "
                    f"{dist.world_size}: random numbers (dropout, ...) will not continue exactly")
    set_rng_state(states[dist.rank] if dist.rank < len(states) else states[0], dist.device)


def bring_best_checkpoint(run, saver, path):
    """A last.pth from another folder brings its best.pth along: the best error restored with it refers to
    that file, and the final report scores best.pth of this folder."""
    source = os.path.join(os.path.dirname(os.path.abspath(path)), "best.pth")
    target = os.path.abspath(run.path("best.pth"))
    if source == target or saver.best_epoch < 0:  # stopped before its first validation: no best.pth yet
        return
    if not os.path.isfile(source):
        raise MissingInputError(f"--resume {path}: its run's best.pth ({source}) is missing; the final report "
                                "scores the best checkpoint, so it must lie beside last.pth")
    if run.is_main:
        saver.write("best.pth", lambda: atomic_copy(source, target))
    barrier()
    run.log.info(f"--resume: copied {source} (best {saver.error_name} {saver.best_error:.3f}, epoch "
                 f"{saver.best_epoch}) into {run.folder}")
