"""utils/files/atomic.py: atomic writes keep the old file on a crash or a failed write (the reason and the file
named), strict JSON, the umask's file mode, and unwritable folders reported."""
import errno
import json
import os
import stat

import numpy as np
import pytest
import torch

from utils.files.atomic import atomic_open, atomic_torch_save, atomic_write_json, check_writable_folder
from utils.script.errors import OutputError


def test_atomic_write_leaves_old_file_on_crash(tmp_path):
    target = tmp_path / "best.pth"
    atomic_torch_save({"v": torch.tensor(1)}, target)
    with pytest.raises(RuntimeError):
        with atomic_open(target, "wb") as f:
            f.write(b"half a checkpoint")
            raise RuntimeError("killed mid-write")
    assert torch.load(target, weights_only=True)["v"].item() == 1
    assert sorted(os.listdir(tmp_path)) == ["best.pth"]  # no temp file left behind


def test_json_files_are_strict_json_with_undefined_numbers_as_null(tmp_path):
    path = tmp_path / "final_metrics.json"
    atomic_write_json({"mae": 1.5, "spearman": float("nan"), "per_bin": [np.float64("inf"), 2.0],
                       "nested": {"r2": -float("inf"), "n": 3, "name": "val"}}, path)

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "mae": 1.5, "spearman": None, "per_bin": [None, 2.0], "nested": {"r2": None, "n": 3, "name": "val"}}


def test_unwritable_folder_is_reported_in_one_line_even_as_root(tmp_path):
    # a folder below a regular file cannot be made by anyone, root included (CI runs as root; chmod stops no root)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError) as error:
        check_writable_folder(str(blocker / "run"))
    assert str(error.value) == f"cannot write to output folder {blocker / 'run'}: Not a directory"
    assert error.value.errno == errno.ENOTDIR
    # nothing half-made: the file is as it was, no folder or temporary file appeared
    assert blocker.read_text() == "not a folder" and os.listdir(tmp_path) == ["a_file"]


@pytest.mark.parametrize("below", [("metrics.json",), ("run", "metrics.json")])
def test_atomic_write_below_a_file_fails_in_one_line_and_writes_nothing(tmp_path, below):
    # directly below the file, makedirs meets the file's name and says "File exists": the cause is the file
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    target = blocker.joinpath(*below)
    with pytest.raises(OutputError) as error:
        atomic_write_json({"mae": 1.0}, target)
    assert str(error.value) == f"Not a directory while writing {target}" and error.value.errno == errno.ENOTDIR
    assert blocker.read_text() == "not a folder" and os.listdir(tmp_path) == ["a_file"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_files_get_the_umask_mode(tmp_path, umask):
    """mkstemp creates 0600 files; results must be readable as a plain open() would make them."""
    previous = os.umask(umask)
    try:
        atomic_torch_save({"v": torch.tensor(1)}, tmp_path / "best.pth")
        atomic_write_json({"mae": 1.0}, tmp_path / "metrics.json")
    finally:
        os.umask(previous)
    for name in ("best.pth", "metrics.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


def test_atomic_overwrite_keeps_the_files_mode(tmp_path):
    private = tmp_path / "metrics.json"
    atomic_write_json({"mae": 1.0}, private)
    private.chmod(0o600)  # made private by its owner: a rewrite must not open it up again
    atomic_write_json({"mae": 2.0}, private)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and json.loads(private.read_text()) == {"mae": 2.0}


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "no space left on device"),
                                          (errno.EROFS, "read-only file system"),
                                          (errno.EACCES, "permission denied")])
def test_failed_write_names_the_reason_and_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, code, reason):
    target = tmp_path / "last.pth"
    atomic_torch_save({"epoch": 0}, target)

    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OutputError) as error:
        atomic_torch_save({"epoch": 1}, target)
    assert str(error.value) == f"{reason} while writing {target}" and error.value.errno == code
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["epoch"] == 0
    assert sorted(os.listdir(tmp_path)) == ["last.pth"]
