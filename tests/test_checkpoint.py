"""Checkpoint format, safe loading and atomic writes."""
import argparse
import errno
import json
import os
import stat
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from models import get_feature_extractor, get_shallow_mlp_head
from utils.files.checkpoint import load_checkpoint, load_model_and_regressor, save_best, save_last, strip_module_prefix
from utils.script.errors import OutputError
from utils.files.atomic import atomic_open, atomic_torch_save, atomic_write_json, check_writable_folder

FIXTURES = Path(__file__).parent / "fixtures"


def coreecho_pair(name="uniformer_small"):
    model = get_feature_extractor(name, None)
    return model, get_shallow_mlp_head(model.head.in_features, 1)


def test_saved_checkpoints_follow_released_layout(tmp_path):
    reference = json.loads((FIXTURES / "coreecho_checkpoint_keys.json").read_text())
    model, regressor = coreecho_pair()
    save_best(tmp_path / "best.pth", model, regressor, epoch=3, best_error=4.5)
    opt = argparse.Namespace(model="uniformer_small", frames=36, frequency=4)
    save_last(tmp_path / "last.pth", opt, model, regressor, 3, 4.5, {"stage": 1})

    best = load_checkpoint(tmp_path / "best.pth")
    assert list(best) == ["epoch", "model", "regressor", "best_error"]
    assert best["best_error"].dtype == torch.float32 and best["best_error"].dim() == 0
    last = load_checkpoint(tmp_path / "last.pth")
    assert list(last)[:5] == ["opt", "model", "regressor", "epoch", "best_error"]
    assert isinstance(last["opt"], argparse.Namespace) and last["opt"].frames == 36

    def layout(entries):
        return [(e["name"], list(e["shape"])) for e in entries]

    ours_model = [(k, list(v.shape)) for k, v in best["model"].items()]
    ours_regressor = [(k, list(v.shape)) for k, v in best["regressor"].items()]
    def entries(name):
        return reference[name] if isinstance(reference[name], list) else reference[name]["entries"]
    assert ours_model == layout(entries("model"))
    assert ours_regressor == layout(entries("regressor"))


def test_loads_checkpoints_with_module_prefix(tmp_path):
    model, regressor = coreecho_pair("uniformer_tiny")
    with torch.no_grad():
        regressor[6].bias.fill_(12.5)
    # as the official scripts write last.pth after multi-GPU training: Namespace + 'module.' keys
    released_opt = argparse.Namespace(model="uniformer_small", frames=36, frequency=4, optim="adamw",
                                      model_path="./save", pretrained_weights=None, aug=True, trial=0)
    prefixed = {"opt": released_opt, "model": {f"module.{k}": v for k, v in model.state_dict().items()},
                "regressor": {f"module.{k}": v for k, v in regressor.state_dict().items()}, "epoch": 25,
                "best_error": torch.tensor(1.0)}
    torch.save(prefixed, tmp_path / "dp.pth")
    fresh_model, fresh_regressor = coreecho_pair("uniformer_tiny")
    load_model_and_regressor(tmp_path / "dp.pth", fresh_model, fresh_regressor)
    assert fresh_regressor[6].bias.item() == 12.5
    assert strip_module_prefix({"module.a": 1, "b": 2}) == {"a": 1, "b": 2}


def test_checkpoint_of_another_architecture_names_the_keys(tmp_path):
    tiny_model, tiny_regressor = coreecho_pair("uniformer_tiny")
    save_best(tmp_path / "tiny.pth", tiny_model, tiny_regressor, 0, 1.0)
    model, regressor = coreecho_pair("uniformer_small")
    with pytest.raises(ValueError) as error:
        load_model_and_regressor(tmp_path / "tiny.pth", model, regressor)
    message = str(error.value)
    assert "tiny.pth" in message and "\n" not in message
    assert "weights do not fit" in message and "wrong shapes" in message
    assert "missing keys" in message and "blocks" in message


class _CreatesFile:
    """A pickle payload that would create a file if it were ever executed."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned.txt"
    torch.save({"model": {}, "regressor": {}, "payload": _CreatesFile(str(marker))}, tmp_path / "evil.pth")
    assert not marker.exists()
    with pytest.raises(ValueError, match="refused to load"):
        load_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()

    # the same payload as a plain pickle file
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_CreatesFile(str(marker)), f)
    with pytest.raises(ValueError):
        load_checkpoint(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(tmp_path / "nope.pth")
    model, regressor = coreecho_pair("uniformer_tiny")
    save_best(tmp_path / "ok.pth", model, regressor, 0, 1.0)
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pth"):
        load_checkpoint(tmp_path / "cut.pth")


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


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_is_reported(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(OutputError, match="locked"):
        check_writable_folder(str(locked / "run"))


def test_unwritable_folder_is_reported_even_as_root(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="a_file"):
        check_writable_folder(str(blocker / "run"))


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
