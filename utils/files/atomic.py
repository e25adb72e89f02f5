"""Atomic file writes: a crash, a Ctrl-C or a full disk never leaves a truncated output behind.

Every writer goes to a temporary file in the destination folder (same file system), flushes and
fsyncs it, gives it the permissions a plain open() would (0666 minus the umask: mkstemp makes 0600),
then swaps it in with os.replace, which is atomic on POSIX and Windows. A failed write removes the
temporary file and raises OutputError naming the file and the reason (no space left, permission
denied, read-only file system).
"""
import contextlib
import errno
import io
import json
import math
import os
import pickle
import shutil
import stat
import tempfile

import torch

from utils.script.errors import OutputError

_REASONS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EROFS: "read-only file system"}


def _umask():
    mask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def output_error(error, path):
    """OutputError '<reason> while writing <path>' for an OSError met while writing `path`."""
    reason = _REASONS.get(error.errno, error.strerror or str(error))
    return OutputError(f"{reason} while writing {os.fspath(path)}", errno=error.errno)


@contextlib.contextmanager
def atomic_open(path, mode="wb", fsync=True):
    """Open a temp file next to `path`; on a clean exit it replaces `path`, on error it vanishes.
    fsync=False skips the flush to disk for files that can be rebuilt (caches)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp_path = None
    try:
        try:
            os.makedirs(folder, exist_ok=True)
        except FileExistsError:  # the folder's name is taken by a file: say so, not "File exists"
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
        fd, tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
        # an existing file keeps its permissions (as with a plain open()); a new one gets 0666 & ~umask
        try:
            permissions = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            permissions = 0o666 & ~_umask()
        os.fchmod(fd, permissions)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException as e:
        if tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp_path)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise output_error(e, path) from None
        raise


def atomic_torch_save(obj, path):
    # Serialised in memory first: torch.save on a file turns a full disk into an opaque
    # "[enforce fail at inline_container.cc] unexpected pos" error; a plain write keeps the errno.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getbuffer())


def atomic_copy(source, target):
    """Copy the file `source` to `target` through a temporary file (no half-copied target)."""
    with open(source, "rb") as src, atomic_open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)


def atomic_write_text(text, path):
    with atomic_open(path, "w") as f:
        f.write(text)


def _finite_or_none(obj):
    """Undefined numbers (NaN, inf: e.g. a correlation of a constant) become null: strict JSON readers
    (browsers, jq, most non-Python parsers) reject the bare NaN that json.dumps writes by default."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {key: _finite_or_none(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(value) for value in obj]
    return obj


def atomic_write_json(obj, path):
    atomic_write_text(json.dumps(_finite_or_none(obj), indent=2, sort_keys=False, allow_nan=False) + "\n", path)


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
        raise OutputError(f"cannot write to output folder {folder}: {e.strerror or e}", errno=e.errno) from None
