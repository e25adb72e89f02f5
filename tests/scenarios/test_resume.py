"""A run's result does not depend on --num_workers, nor on being stopped (SIGTERM, SIGKILL, a killed data-loader
worker) and resumed with --resume; NaN losses stop cleanly."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import train_first_stage
from conftest import REPO_ROOT, TINY
from models import build_model
from utils.files.checkpoint import load_checkpoint
from utils.script.errors import MissingInputError, NonFiniteLossError

# One thread per run: the runs of a test go side by side on the cores (and every run computes alike).
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def stage1_command(data, save_root, run_name, *extra):
    # dropout on (uniformer_tiny has none; the regressor's does the work) and augmentation: every random
    # stream of a run is exercised
    return [sys.executable, "train_first_stage.py", "--data_folder", str(data), *TINY, "--batch_size", "2",
            "--epochs", "1", "--learning_rate", "1e-3", "--aug", "--temp", "1.0", "--trial", "3",
            "--save_root", str(save_root), "--run_name", run_name, *extra]


def start(command):
    """The run in a session of its own, as a scheduler's job: a signal to the group reaches its workers too."""
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True)


def ended(process, status=0):
    """The run's stderr, once it has ended with `status`."""
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == status, stderr[-2000:]
    return stderr


def when_logged(process, log, text):
    """Wait until `text` is in what `log` gets from now on (a resumed run appends to it)."""
    offset, deadline = log.stat().st_size if log.exists() else 0, time.time() + 300
    while process.poll() is None and time.time() < deadline:
        if log.exists() and text in log.read_text()[offset:]:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never logged")


def data_loader_worker(process):
    """A child of the run's process: its data-loader workers are its only ones."""
    deadline = time.time() + 60
    while time.time() < deadline:
        children = open(f"/proc/{process.pid}/task/{process.pid}/children").read().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("no data-loader worker started")


def assert_same_weights(a, b):
    assert a["epoch"] == b["epoch"]
    for part in ("model", "regressor"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, atol=1e-6, rtol=0, msg=f"{part}.{key}")
    assert float(a["best_error"]) == pytest.approx(float(b["best_error"]), abs=1e-6)


def test_workers_sigterm_sigkill_and_a_killed_worker_do_not_change_the_result(echonet, tmp_path):
    """Two uninterrupted runs (0 and 2 workers) alongside one run with 2 workers that is stopped four ways and
    resumed each time; all three end with the same weights."""
    workers0 = start(stage1_command(echonet, tmp_path, "workers0", "--num_workers", "0"))
    workers2 = start(stage1_command(echonet, tmp_path, "workers2", "--num_workers", "2"))
    command = stage1_command(echonet, tmp_path, "stopped", "--num_workers", "2")
    log, last = tmp_path / "stopped" / "training.log", tmp_path / "stopped" / "last.pth"

    # SIGTERM to the whole job (as SLURM sends it) in epoch 0: the step finishes, last.pth holds that step
    process = start(command)
    when_logged(process, log, "Train [0][2/")
    os.killpg(process.pid, signal.SIGTERM)
    stderr = ended(process, 143)
    step = int(re.fullmatch(r"SIGTERM: interrupted at epoch 0, step (\d)/5; last\.pth holds epoch 0 up to step "
                            r"\1/5; rerun with --resume\n", stderr).group(1))
    saved = load_checkpoint(last)
    assert list(saved)[:5] == ["opt", "model", "regressor", "epoch", "best_error"] and saved["epoch"] == 0
    assert saved["resume"]["position"]["step"] == step >= 2
    build_model("uniformer_tiny", last)  # read back strictly, as a scoring script reads it

    # SIGKILL in the middle of epoch 1 (epoch 0's last.pth exists by then)
    process = start(command + ["--resume"])
    when_logged(process, log, "Train [1][2/")
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed mid-epoch"
    assert load_checkpoint(last)["epoch"] == 0 and "position" not in load_checkpoint(last)["resume"]

    # --save_every_steps 2, then SIGKILL at step 3: last.pth holds step 2 (4 if step 4 beat the kill)
    process = start(command + ["--resume", "--save_every_steps", "2"])
    when_logged(process, log, "Train [1][3/")
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    step = load_checkpoint(last)["resume"]["position"]["step"]
    assert step in (2, 4) and load_checkpoint(last)["epoch"] == 1

    # a data-loader worker killed by SIGKILL, as the out-of-memory killer does: one line, what to do
    process = start(command + ["--resume", "--save_every_steps", "2"])
    when_logged(process, log, f"Resumed from {last}: epoch 1 up to step {step}/5")
    os.kill(data_loader_worker(process), signal.SIGKILL)
    stderr = ended(process, 1)
    # PyTorch names the signal when its SIGCHLD handler sees the death first, else only "exited unexpectedly"
    assert re.fullmatch(r"error: DataLoader worker \(pid \d+\) (was killed by SIGKILL, most likely by the "
                        r"out-of-memory killer|exited unexpectedly, most likely killed for lack of memory): lower "
                        r"--num_workers or --batch_size, use --cache_dir \(no decoding\) "
                        r"or give the job more memory; last\.pth holds epoch 1( up to step \d/5)?; rerun with "
                        r"--resume\n", stderr), stderr

    finished = start(command + ["--resume"])
    for process in (finished, workers0, workers2):
        ended(process)
    reference = load_checkpoint(tmp_path / "workers2" / "last.pth")
    assert_same_weights(load_checkpoint(tmp_path / "workers0" / "last.pth"), reference)
    assert_same_weights(reference, load_checkpoint(last))
    text = log.read_text()
    assert text.count("Resumed from") == 4 and "other options" not in text


def test_resume_without_checkpoint_starts_fresh_and_a_finished_run_extends_into_a_new_folder(echonet, tmp_path):
    train_first_stage.main(stage1_command(echonet, tmp_path, "fresh", "--resume", "--num_workers", "0")[2:]
                           + ["--epochs", "0"])
    finished = tmp_path / "fresh" / "last.pth"
    assert load_checkpoint(finished)["epoch"] == 0
    resume = load_checkpoint(finished)["resume"]
    assert len(resume["rng_by_rank"]) == 1 and torch.equal(resume["rng_by_rank"][0]["torch"], resume["rng"]["torch"])

    # Tampered weights prove a resume: a restart would reach the same weights as a resume (seeded), but not these.
    # The encoder's own head is frozen in stage 1 (kept exactly); the regressor's output bias, started at the mean
    # EF, moves by about the learning rate (1e-3) a step, so from -1000 it stays near -1000.
    tampered = load_checkpoint(finished)
    head = tampered["model"]["head.weight"] + 0.5
    tampered["model"]["head.weight"], tampered["regressor"]["6.bias"] = head, torch.full((1,), -1000.0)
    torch.save(tampered, finished)

    # one more epoch in another folder (the run name holds the epoch count): best.pth comes along, so the best
    # error restored from last.pth and the final report refer to the same checkpoint
    argv = stage1_command(echonet, tmp_path, "extended", "--resume", str(finished), "--num_workers", "0",
                          "--weight_decay", "0.01")[2:]
    train_first_stage.main(argv)
    extended = load_checkpoint(tmp_path / "extended" / "last.pth")
    assert extended["epoch"] == 1 and torch.equal(extended["model"]["head.weight"], head)
    assert abs(float(extended["regressor"]["6.bias"]) + 1000.0) < 0.5, extended["regressor"]["6.bias"]
    best = load_checkpoint(tmp_path / "extended" / "best.pth")
    report = json.loads((tmp_path / "extended" / "final_metrics.json").read_text())
    assert best["epoch"] in (0, 1) and report["best_epoch"] == best["epoch"]
    log = (tmp_path / "extended" / "training.log").read_text()
    assert "--resume: copied" in log
    assert "other options than it was trained with (--weight_decay 0.0001 -> 0.01)" in log  # said, not refused
    (tmp_path / "fresh" / "best.pth").unlink()
    argv = stage1_command(echonet, tmp_path, "orphan", "--resume", str(finished), "--num_workers", "0")[2:]
    with pytest.raises(MissingInputError, match="best.pth .* is missing"):
        train_first_stage.main(argv)


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
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 2/5;") as error:
        train_first_stage.main(argv)
    assert "last.pth" in str(error.value)
    assert load_checkpoint(tmp_path / "nan" / "last.pth")["epoch"] == 0  # the last good one stays


def test_each_process_saves_and_restores_its_own_gpu_random_state(monkeypatch, tmp_path):
    """Under torchrun rank r draws on GPU r only; its stream must continue from its own saved state, not from
    rank 0's view of GPU r (never used there, so still the seed's). Simulated: no GPU needed."""
    import logging

    from utils.engine.distributed import DistInfo
    from utils.engine.seed import get_rng_state, set_rng_state
    from utils.training.resume import restore_rng

    saved_by_gpu = {0: torch.tensor([10], dtype=torch.uint8), 1: torch.tensor([11], dtype=torch.uint8)}
    restored = {}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: saved_by_gpu[device.index])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.__setitem__(device.index, state))
    states = [get_rng_state(torch.device("cuda", rank)) for rank in (0, 1)]  # what each rank gathers
    assert [int(s["cuda"]) for s in states] == [10, 11]

    for rank in (0, 1):
        dist = DistInfo(rank, 2, rank, torch.device("cuda", rank), rank == 0, True)
        restore_rng({"rng": states[0], "rng_by_rank": states}, dist, logging.getLogger("test"), "last.pth")
    assert {gpu: int(state) for gpu, state in restored.items()} == {0: 10, 1: 11}

    # a last.pth of the earlier format held every visible GPU's state as rank 0 saw them: GPU 1's is used
    restored.clear()
    set_rng_state({**states[0], "cuda": [saved_by_gpu[0], saved_by_gpu[1]]}, torch.device("cuda", 1))
    assert {gpu: int(state) for gpu, state in restored.items()} == {1: 11}
    set_rng_state(states[0], torch.device("cpu"))  # CPU runs never touch CUDA
    assert restored == {1: saved_by_gpu[1]}
