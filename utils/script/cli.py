"""Script entry point: the project's own user errors, Ctrl-C, SIGTERM and dead data-loader workers end in one
clear line.

- `UserError` (bad paths, files, flags): `error: <message>` on stderr and in the log file, exit 1; CUDA out of
  memory: one line with what to lower, exit 1; a data-loader worker killed by a signal: the likely cause, exit 1.
- Ctrl-C and SIGTERM (a scheduler's time limit or preemption): one line saying where the run stopped, what is
  kept and how to continue; exit 130 / 143. A second signal stops at once; SIGTERM copies within 2 s (srun and
  torchrun pass the signal on) are ignored. During a training step (`defer_sigterm(True)`) SIGTERM only sets a
  flag (`sigterm_pending()`): the loop finishes the step, saves and stops.
- Anything else keeps its full traceback. COREECHO_TRACEBACK=1 shows tracebacks for the cases above too.
"""
import os
import re
import signal
import sys
import time

import torch

from utils.script.errors import UserError
from utils.script.log import log_to_files
from utils.script.options import offers

_state = {"describe": None, "kept": None, "defer": False, "pending": None, "first": None}
_COPIES_WITHIN = 2.0  # seconds after a SIGTERM in which another one is a copy of it
_WORKER_DIED = re.compile(r"DataLoader worker \(pid\(?s?\)? ([\d, ]+)\) (?:is killed by signal: ([^.]+)\.|exited)")
_SIGNAL_BY_TEXT = {signal.strsignal(s): s for s in signal.Signals if signal.strsignal(s)}


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM; `signum` says which (the exit status is 128 + signum)."""

    def __init__(self, signum=signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def on_interrupt(describe, kept=None):
    """`describe()` returns the line printed when the job is interrupted (e.g. epoch, step, last checkpoint);
    `kept()`, optional, what is saved and how to go on, appended to the line of a failure such as a dead worker."""
    _state.update(describe=describe, kept=kept)


def defer_sigterm(defer):
    """While True, SIGTERM does not interrupt: it is only recorded, for the caller to stop at a safe point."""
    _state["defer"] = defer


def sigterm_pending():
    return _state["pending"] is not None


def _on_signal(signum, frame):
    first = _state["first"]
    if first is not None:  # a second signal: the process ends now (it had started to stop)
        if signum == signal.SIGTERM and time.monotonic() - first < _COPIES_WITHIN:
            return  # a copy of the first, passed on by srun or torchrun: the save goes on
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _state["first"] = time.monotonic()
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C stops even inside a long native call
    if signum == signal.SIGTERM and _state["defer"]:
        _state["pending"] = signum
        return
    raise Interrupted(signum)


def _fail(message, code, every_rank=True):
    log_to_files(message)
    if every_rank or os.environ.get("RANK", "0") == "0":  # the ranks of a run agree where it stopped: one line
        print(message, file=sys.stderr, flush=True)
    sys.exit(code)


def _interrupted(signum):
    describe = _state["describe"]
    line = describe() if describe else "interrupted; nothing half-written was kept"
    _fail(line if signum == signal.SIGINT else f"{signal.Signals(signum).name}: {line}", 128 + signum,
          every_rank=False)


def run_main(main):
    _state.update(describe=None, kept=None, defer=False, pending=None, first=None)
    previous = {signum: signal.signal(signum, _on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        main()
    except KeyboardInterrupt as e:
        _interrupted(getattr(e, "signum", signal.SIGINT))
    except torch.cuda.OutOfMemoryError as e:
        if os.environ.get("COREECHO_TRACEBACK"):
            raise
        _fail(f"error: {cuda_oom_hint(e)}", 1)
    except UserError as e:
        if os.environ.get("COREECHO_TRACEBACK"):
            raise
        lines = str(e).strip().splitlines()
        _fail(f"error: {lines[0] if lines else type(e).__name__}", 1)
    except RuntimeError as e:
        died = worker_death(e)
        if died is None or os.environ.get("COREECHO_TRACEBACK"):
            raise
        if died[1] == "SIGTERM":  # the job is being stopped: its own SIGTERM is on the way
            _state["first"] = _state["first"] or time.monotonic()
            _interrupted(signal.SIGTERM)
        kept = _state["kept"]
        _fail(f"error: {worker_death_hint(*died)}" + (f"; {kept()}" if kept else ""), 1)
    finally:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is _on_signal:  # no signal came: put the old handler back
                signal.signal(signum, handler)


def cuda_oom_hint(error):
    return (f"CUDA out of memory ({str(error).splitlines()[0][:120]}). Lower --batch_size (it is per GPU), "
            "use --amp bf16/fp16, --frames, or add GPUs with torchrun.")


def worker_death(error):
    """(pids, signal name or None) when `error`, or an error it was raised from, says that a DataLoader worker
    died; None otherwise. PyTorch raises `is killed by signal: Killed.` from its SIGCHLD handler, often
    wrapped in `exited unexpectedly`."""
    found, seen = None, set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        match = _WORKER_DIED.search(str(error)) if isinstance(error, RuntimeError) else None
        if match and (found is None or match.group(2)):
            signum = _SIGNAL_BY_TEXT.get(match.group(2))
            found = (match.group(1), signum.name if signum else match.group(2))
        error = error.__cause__ or error.__context__
    return found


def worker_death_hint(pids, signal_name):
    """The cause and the remedy of a dead DataLoader worker, naming only flags the script has."""
    lower = [flag for flag in ("--num_workers", "--batch_size") if offers(flag)]
    remedies = [f"lower {' or '.join(lower)}"] if lower else []
    if offers("--cache_dir"):
        remedies.append("use --cache_dir (no decoding)")
    remedies = ", ".join(remedies) + " or give the job more memory"
    if signal_name == "SIGKILL":
        cause = "was killed by SIGKILL, most likely by the out-of-memory killer"
    elif signal_name == "SIGBUS":
        cause = "was killed by SIGBUS, most likely for lack of shared memory (/dev/shm)"
    elif signal_name:
        cause = f"was killed by {signal_name}"
    else:
        cause = "exited unexpectedly, most likely killed for lack of memory"
    return f"DataLoader worker (pid {pids}) {cause}: {remedies}"
