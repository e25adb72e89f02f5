"""Data loaders whose batches depend only on (seed, epoch), that can start an epoch part-way (a resumed
run skips the batches it already trained on), whose workers leave SIGTERM to the main process, and
iteration that turns a worker's user error into one line."""
import itertools
import multiprocessing
import os
import signal
import threading

import torch
from torch.utils.data import DataLoader, DistributedSampler

from utils.script.errors import UserError


def worker_init(worker_id):
    """DataLoader workers leave a scheduler's SIGTERM to the main process. SLURM signals every process of a job:
    a worker that died of it would break the main process's last step and its save. The loader's own SIGTERM
    (from the main process, to stop a worker) still ends the worker at once, as PyTorch's handler does.
    Workers start with SIGTERM blocked (WORKER_CONTEXT), so every thread of theirs, also one that a library
    starts at fork (wandb does), leaves it pending for the thread below."""
    if not hasattr(signal, "sigwaitinfo"):  # macOS: PyTorch's behaviour
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads started later inherit the mask
    threading.Thread(target=_exit_on_sigterm_from, args=(os.getppid(),), name="sigterm", daemon=True).start()


class _SigtermBlockedProcess(multiprocessing.context.ForkProcess):
    """A forked worker whose threads all start with SIGTERM blocked: the fork happens with it blocked."""

    def start(self):
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _WorkerContext(multiprocessing.context.ForkContext):
    Process = _SigtermBlockedProcess


# DataLoader(multiprocessing_context=WORKER_CONTEXT, worker_init_fn=worker_init); None where fork or sigwaitinfo
# is missing (macOS, Windows): PyTorch's default context and behaviour there
WORKER_CONTEXT = _WorkerContext() if hasattr(signal, "sigwaitinfo") and hasattr(os, "fork") else None


def _exit_on_sigterm_from(parent):
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
            os._exit(0)


class ResumableSampler(DistributedSampler):
    """A DistributedSampler that can leave out the first `skip` samples of this process's share of an epoch:
    the batches a run had trained on before it was stopped, never loaded again."""

    skip = 0

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self):
        return self.num_samples - self.skip


def make_loader(dataset, batch_size, num_workers, dist, training=True, seed=0, prefetch_factor=2):
    """A DataLoader whose batches depend only on (seed, epoch): a DistributedSampler even with one process,
    so single-GPU, multi-GPU and resumed runs draw the same shuffles. Call loader.sampler.set_epoch(e);
    `loader.sampler.skip = k * batch_size` starts the epoch at batch k.

    The loader gets its own generator: otherwise each new iterator draws its workers' base seed from the
    global RNG, so the dropout masks of the model would depend on --num_workers (persistent workers
    draw once, a worker-less loader draws every epoch) and on resuming. A `training` loader shuffles and drops the
    last incomplete batch (as released); otherwise the order is kept and nothing is dropped."""
    drop_last = training
    sampler = ResumableSampler(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=training,
                               seed=seed, drop_last=drop_last)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=drop_last,
        pin_memory=dist.device.type == "cuda", persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed), worker_init_fn=worker_init if num_workers > 0 else None,
        multiprocessing_context=WORKER_CONTEXT if num_workers > 0 else None,
    )


def keep_item(item):
    """DataLoader collate for batch_size=None: the item unchanged (no conversion of its fields)."""
    return item


def video_loader(dataset, num_workers, device, seed=0):
    """The one loader that yields one video per item (any number of clips), in dataset order. It has its own
    generator, so the workers' base seed is not drawn from the global RNG (see make_loader), and its workers
    leave a scheduler's SIGTERM to the main process (worker_init)."""
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers, collate_fn=keep_item,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed),
                      worker_init_fn=worker_init if num_workers > 0 else None,
                      multiprocessing_context=WORKER_CONTEXT if num_workers > 0 else None)


def batches(loader):
    """Iterate a loader; a user error raised in a worker (a corrupt video, say) surfaces as one line
    naming the file instead of the worker's stack. Other errors keep their traceback."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except UserError as e:
            # From a worker the message is the worker's whole traceback; its last line is
            # "<module>.<Class>: <message>".
            lines = [line for line in str(e).splitlines() if line.strip()]
            last = lines[-1] if lines else type(e).__name__
            if len(lines) > 1 and f"{type(e).__name__}: " in last:
                last = last.split(f"{type(e).__name__}: ", 1)[1]
            raise type(e)(f"data loading failed: {last}") from e
        yield batch
