"""Atomic file writes: a crash never leaves a truncated output behind.

Every writer goes to a temporary file in the destination folder (same file system), flushes and
fsyncs it, then swaps it in with os.replace, which is atomic on POSIX and Windows.
"""
import contextlib
import json
import os
import pickle
import tempfile

import torch


@contextlib.contextmanager
def atomic_open(path, mode="wb", fsync=True):
    """Open a temp file next to `path`; on a clean exit it replaces `path`, on error it vanishes.
    fsync=False skips the flush to disk for files that can be rebuilt (caches)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        raise


def atomic_torch_save(obj, path):
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def atomic_write_text(text, path):
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(obj, path):
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", path)


def atomic_write_pickle(obj, path):
    with atomic_open(path, "wb") as f:
        pickle.dump(obj, f)


def check_writable_folder(folder):
    """Create `folder` if needed and prove we can write there; one clear line if we cannot."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise PermissionError(f"cannot write to output folder {folder}: {e.strerror or e}") from None
