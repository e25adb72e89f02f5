"""train_first_stage.py: bad --frames from the command line, bf16 / fp16 training (the loss scaler saved for
resume), and an offline wandb run with its metrics and embedding maps. Its checkpoints, log and timing after a
full run: tests/scenarios/test_pipeline.py."""
import subprocess
import sys

import pytest
import torch

import train_first_stage
from conftest import REPO_ROOT, TINY
from utils.evaluation import projection
from utils.files.checkpoint import load_checkpoint


def test_script_rejects_bad_frames_from_the_command_line():
    result = subprocess.run([sys.executable, "train_first_stage.py", "--frames", "0", "--frequency", "4"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--frames: must be >= 1, got 0" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_stage1_trains_with_amp(echonet, tmp_path, amp):
    train_first_stage.main(["--data_folder", str(echonet), "--model", "uniformer_tiny",
                            "--frames", "8", "--frequency", "2", "--batch_size", "4", "--epochs", "0",
                            "--num_workers", "0", "--device", "cpu",
                            "--amp", amp, "--save_root", str(tmp_path), "--run_name", amp, "--channels_last"])
    last = load_checkpoint(tmp_path / amp / "last.pth")
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    scaler_state = last["resume"]["scaler"]
    if amp == "fp16":  # the loss scaler is saved for resume
        assert scaler_state["scale"] > 0
    else:  # bf16 needs no scaling: the scaler stays disabled
        assert scaler_state == {}


def test_wandb_offline_run_logs_metrics_and_embedding_maps(echonet, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    # the maps' layout without the projections themselves (a real UMAP compiles with numba for ~12 s)
    monkeypatch.setattr(projection, "project", lambda embeddings, method="tsne", seed=None: embeddings[:, :2])
    train_first_stage.main(["--data_folder", str(echonet), *TINY, "--num_workers", "0", "--save_root", str(tmp_path),
                            "--run_name", "w", "--batch_size", "4", "--epochs", "0", "--wandb",
                            "--wandb_project_name", "test"])
    runs = list((tmp_path / "w" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")) and list(runs[0].rglob("*TSNE*.png")) and list(runs[0].rglob("*UMAP*.png"))
    assert f"wandb: WANDB_MODE=offline, logging offline to {tmp_path / 'w'}/wandb" in \
        (tmp_path / "w" / "training.log").read_text()
