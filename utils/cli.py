"""Script entry point: expected failures end with one clear line instead of a traceback."""
import os
import sys

import torch

from utils.runtime import cuda_oom_hint


def run_main(main):
    """Call main(); on a user-facing error print `error: <one line>` and exit 1.
    Set COREECHO_TRACEBACK=1 to see the full traceback instead."""
    try:
        main()
    except torch.cuda.OutOfMemoryError as e:
        if os.environ.get("COREECHO_TRACEBACK"):
            raise
        sys.exit(f"error: {cuda_oom_hint(e)}")
    except (FileNotFoundError, ValueError, PermissionError, RuntimeError, KeyError) as e:
        if os.environ.get("COREECHO_TRACEBACK"):
            raise
        message = str(e).strip().splitlines()
        sys.exit(f"error: {message[0] if message else type(e).__name__}")
