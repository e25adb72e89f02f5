"""Script entry point: the project's own user errors and Ctrl-C end in one clear line.

- `UserError` (bad paths, files, flags): `error: <message>` on stderr and in the log file, exit 1.
- CUDA out of memory: one line with what to lower, exit 1.
- Ctrl-C: one line saying where the run stopped and how to continue, exit 130. The first Ctrl-C
  restores the default handler, so a second one stops the process at once even during clean-up.
- Anything else is a bug or an unexpected failure and keeps its full traceback.
Set COREECHO_TRACEBACK=1 to see tracebacks for the first two kinds too.
"""
import os
import signal
import sys

import torch

from utils.script.errors import UserError
from utils.script.log import log_to_files

_interrupt_message = None


def on_interrupt(describe):
    """`describe()` returns the line printed when the job is interrupted (e.g. epoch, step, last checkpoint)."""
    global _interrupt_message
    _interrupt_message = describe


def _first_interrupt(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends the process immediately
    raise KeyboardInterrupt


def _fail(message, code):
    log_to_files(message)
    print(message, file=sys.stderr, flush=True)
    sys.exit(code)


def run_main(main):
    global _interrupt_message
    _interrupt_message = None
    previous = signal.signal(signal.SIGINT, _first_interrupt)
    try:
        main()
    except KeyboardInterrupt:
        line = _interrupt_message() if _interrupt_message else "interrupted; nothing half-written was kept"
        _fail(line, 130)
    except torch.cuda.OutOfMemoryError as e:
        if os.environ.get("COREECHO_TRACEBACK"):
            raise
        _fail(f"error: {cuda_oom_hint(e)}", 1)
    except UserError as e:
        if os.environ.get("COREECHO_TRACEBACK"):
            raise
        lines = str(e).strip().splitlines()
        _fail(f"error: {lines[0] if lines else type(e).__name__}", 1)
    finally:
        if signal.getsignal(signal.SIGINT) is _first_interrupt:  # no Ctrl-C came: put the old handler back
            signal.signal(signal.SIGINT, previous)


def cuda_oom_hint(error):
    return (f"CUDA out of memory ({str(error).splitlines()[0][:120]}). Lower --batch_size (it is per GPU), "
            "use --amp bf16/fp16, --frames, or add GPUs with torchrun.")
