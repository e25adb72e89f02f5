"""A run's result does not depend on --num_workers, nor on a SIGKILL followed by --resume; NaN losses stop
cleanly."""
import os
import signal
import subprocess
import sys

import pytest
import torch

import train_first_stage
from conftest import REPO_ROOT, TINY, signal_when_logged
from utils.checkpoint import load_checkpoint
from utils.errors import NonFiniteLossError


def stage1_command(data, save_root, run_name, *extra):
    # dropout on (uniformer_tiny has none; the regressor's does the work) and augmentation: every random
    # stream of a run is exercised
    return [sys.executable, "train_first_stage.py", "--data_folder", str(data), *TINY, "--batch_size", "2",
            "--epochs", "1", "--learning_rate", "1e-3", "--aug", "--temp", "1.0", "--trial", "3",
            "--save_root", str(save_root), "--run_name", run_name, *extra]


def run(command):
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stderr[-2000:]


def assert_same_weights(a, b):
    assert a["epoch"] == b["epoch"]
    for part in ("model", "regressor"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, atol=1e-6, rtol=0, msg=f"{part}.{key}")
    assert float(a["best_error"]) == pytest.approx(float(b["best_error"]), abs=1e-6)


def test_workers_and_sigkill_resume_do_not_change_the_result(echonet, tmp_path):
    run(stage1_command(echonet, tmp_path, "workers0", "--num_workers", "0"))
    run(stage1_command(echonet, tmp_path, "workers2", "--num_workers", "2"))
    assert_same_weights(load_checkpoint(tmp_path / "workers0" / "last.pth"),
                        load_checkpoint(tmp_path / "workers2" / "last.pth"))

    # Same run with 2 workers, killed with SIGKILL in the middle of epoch 1 (epoch 0's last.pth exists by then).
    log = tmp_path / "killed" / "training.log"
    process = subprocess.Popen(stage1_command(echonet, tmp_path, "killed", "--num_workers", "2"), cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "WANDB_MODE": "disabled"})
    signal_when_logged(process, log, "Train [1][2/", signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed mid-epoch"
    assert load_checkpoint(tmp_path / "killed" / "last.pth")["epoch"] == 0

    run(stage1_command(echonet, tmp_path, "killed", "--num_workers", "2", "--resume"))
    assert_same_weights(load_checkpoint(tmp_path / "workers2" / "last.pth"),
                        load_checkpoint(tmp_path / "killed" / "last.pth"))
    assert "Resumed from" in log.read_text()


def test_resume_without_checkpoint_starts_fresh(echonet, tmp_path):
    train_first_stage.main(stage1_command(echonet, tmp_path, "fresh", "--resume", "--num_workers", "0")[2:]
                           + ["--epochs", "0"])
    assert load_checkpoint(tmp_path / "fresh" / "last.pth")["epoch"] == 0


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(echonet, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = train_first_stage.RnCLoss

    class PoisonedLoss(original):
        """The real loss, turned into NaN from the 7th batch on (epoch 1 with 5 batches per epoch)."""

        def forward(self, features, labels):
            calls["n"] += 1
            loss = super().forward(features, labels)
            return loss * float("nan") if calls["n"] >= 7 else loss

    monkeypatch.setattr(train_first_stage, "RnCLoss", PoisonedLoss)
    argv = stage1_command(echonet, tmp_path, "nan", "--num_workers", "0")[2:]
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1") as error:
        train_first_stage.main(argv)
    assert "last.pth" in str(error.value)
    assert load_checkpoint(tmp_path / "nan" / "last.pth")["epoch"] == 0  # the last good one stays
