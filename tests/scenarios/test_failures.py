"""What a user meets when something goes wrong: one clear line for the project's own errors (and a full
traceback for anything else), Ctrl-C, a full disk, bad inputs found before any work starts, and the
messages and warnings a user needs."""
import errno
import logging
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

import test_with_three_clips
import train_first_stage
from conftest import REPO_ROOT, TINY, run_script, signal_when_logged
from datasets import EchoNet, EchoNetFixedClips
from datasets import headers
from models import build_model, get_feature_extractor, get_shallow_mlp_head, load_pretrained
from utils.files.checkpoint import load_checkpoint, save_best
from utils.script.cli import run_main
from utils.engine.distributed import init_distributed
from utils.script.errors import BadInputError, MissingInputError
from utils.evaluation.inference import InferenceSettings, predict
from utils.evaluation.projection import project
from utils.pictures.plots import embedding_map, embedding_maps, prediction_figure
from utils.engine.loaders import batches, make_loader


def stage1_args(data, save_root, run_name="run", *extra):
    return ["--data_folder", str(data), *TINY, "--num_workers", "0", "--batch_size", "4", "--epochs", "1",
            "--save_root", str(save_root), "--run_name", run_name, *extra]


# ---------------------------------------------------------------- the one-line policy

def test_user_errors_are_one_line_and_bugs_keep_their_traceback(capsys):
    def user_error():
        raise BadInputError("FileList.csv: duplicate FileName 0X1\n  with more detail below")

    with pytest.raises(SystemExit) as exit_:
        run_main(user_error)
    assert exit_.value.code == 1
    assert capsys.readouterr().err == "error: FileList.csv: duplicate FileName 0X1\n"

    def bug():
        raise ValueError("mat1 and mat2 shapes cannot be multiplied (4x128 and 512x1)")

    with pytest.raises(ValueError, match="shapes cannot be multiplied"):  # not swallowed into one line
        run_main(bug)


def test_cuda_out_of_memory_gets_a_hint(capsys):
    def main():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(SystemExit) as exit_:
        run_main(main)
    message = capsys.readouterr().err
    assert exit_.value.code == 1 and message.count("\n") == 1
    assert message.startswith("error: CUDA out of memory") and "--batch_size" in message and "--amp" in message


def test_script_prints_one_line_for_a_missing_data_folder_and_makes_no_run_folder(tmp_path):
    result = run_script("train_first_stage.py", "--data_folder", tmp_path / "nowhere", "--frames", "8",
                        "--frequency", "2", "--save_root", tmp_path / "save", "--device", "cpu",
                        "--model", "uniformer_tiny")
    assert result.returncode == 1
    assert result.stderr.startswith("error:") and result.stderr.count("\n") == 1 and "nowhere" in result.stderr
    assert not (tmp_path / "save").exists()


def test_error_line_is_also_in_the_log(echonet, tmp_path, monkeypatch, capsys):
    original = train_first_stage.RnCLoss

    class PoisonedLoss(original):
        def forward(self, features, labels):
            return super().forward(features, labels) * float("nan")

    monkeypatch.setattr(train_first_stage, "RnCLoss", PoisonedLoss)
    with pytest.raises(SystemExit):
        run_main(lambda: train_first_stage.main(stage1_args(echonet, tmp_path)))
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: non-finite RnC loss (nan) at epoch 0, step 1/")
    assert (tmp_path / "run" / "training.log").read_text().strip().endswith(error)


# ---------------------------------------------------------------- Ctrl-C

def test_ctrl_c_during_training_says_where_and_how_to_continue(echonet, tmp_path):
    log = tmp_path / "run" / "training.log"
    process = subprocess.Popen([sys.executable, "train_first_stage.py", *stage1_args(echonet, tmp_path)],
                               cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "WANDB_MODE": "disabled"})
    signal_when_logged(process, log, "Train [1][1/", signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr
    assert lines[0].startswith("interrupted at epoch 1, step ") and lines[0].endswith(
        "; last.pth holds epoch 0; rerun with --resume")
    assert load_checkpoint(tmp_path / "run" / "last.pth")["epoch"] == 0
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]  # nothing half-written
    assert log.read_text().strip().endswith(lines[0])


def test_ctrl_c_during_the_test_writes_nothing(echonet, tmp_path, monkeypatch, capsys):
    model = get_feature_extractor("uniformer_tiny")
    save_best(tmp_path / "best.pth", model, get_shallow_mlp_head(128), 0, 1.0)

    def interrupted_predict(*args, progress, **kwargs):
        for _ in progress(iter([{"name": "a.avi"}, {"name": "b.avi"}]), 2):
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, through the script's handler
            time.sleep(1)

    monkeypatch.setattr(test_with_three_clips, "predict", interrupted_predict)
    out = tmp_path / "results" / "test.pkl"
    try:
        with pytest.raises(SystemExit) as exit_:
            run_main(lambda: test_with_three_clips.main(["--data_folder", str(echonet), "--pretrained_weights",
                                                         str(tmp_path / "best.pth"), *TINY[:-2], "--num_workers",
                                                         "0", "--path_save_test_files", str(out)]))
        # the first Ctrl-C put back the default handler: a second one stops the process at once
        assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert exit_.value.code == 130
    assert capsys.readouterr().err == ("interrupted during the test after 0 of 3 videos; no result file was written; "
                                       "rerun the same command\n")
    assert not out.exists() and not (out.parent / "metrics.json").exists()


# ---------------------------------------------------------------- disk full, unwritable outputs

def test_disk_full_while_saving_keeps_the_last_checkpoint_and_says_so(echonet, tmp_path, monkeypatch, capsys):
    real_fsync = os.fsync
    seen = {"last.pth": 0}

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.basename(target).startswith(".last.pth."):
            seen["last.pth"] += 1
            if seen["last.pth"] == 2:  # epoch 1's last.pth: the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: train_first_stage.main(stage1_args(echonet, tmp_path)))
    assert exit_.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error == (f"error: no space left on device while writing {tmp_path / 'run' / 'last.pth'}; "
                     "last.pth (epoch 0) is intact; fix that (free space, permissions) and rerun with --resume")
    assert load_checkpoint(tmp_path / "run" / "last.pth")["epoch"] == 0
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- found before any work

def test_unreadable_video_is_found_before_the_first_epoch(echonet_copy, tmp_path):
    table = (echonet_copy / "FileList.csv").read_text().splitlines()
    val_video = next(line.split(",")[0] for line in table[1:] if line.endswith("VAL"))
    val_bytes = (echonet_copy / "Videos" / f"{val_video}.avi").read_bytes()
    (echonet_copy / "Videos" / f"{val_video}.avi").write_bytes(b"not a video")
    with pytest.raises(BadInputError, match=f"{val_video}.avi cannot be opened"):
        train_first_stage.main(stage1_args(echonet_copy, tmp_path / "save"))
    assert not (tmp_path / "save").exists()  # nothing started, no empty run folder
    # the test split too (the final report scores it after the last epoch), and the weights file
    test_video = next(line.split(",")[0] for line in table[1:] if line.endswith("TEST"))
    (echonet_copy / "Videos" / f"{val_video}.avi").write_bytes(val_bytes)
    (echonet_copy / "Videos" / f"{test_video}.avi").rename(tmp_path / "kept.avi")
    with pytest.raises(MissingInputError, match=rf"split 'test'.*{test_video}.avi"):
        train_first_stage.main(stage1_args(echonet_copy, tmp_path / "save"))
    (tmp_path / "kept.avi").rename(echonet_copy / "Videos" / f"{test_video}.avi")
    (tmp_path / "weights.pth").write_bytes(b"<html>not found</html>")
    with pytest.raises(BadInputError, match="weights.pth is not a PyTorch checkpoint"):
        train_first_stage.main(stage1_args(echonet_copy, tmp_path / "save", "run", "--pretrained_weight",
                                           str(tmp_path / "weights.pth")))
    assert not (tmp_path / "save").exists()


def test_header_pass_is_cached_by_size_and_time(echonet_copy, tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(headers, "frame_count", lambda path: opened.append(path) or 100)
    EchoNet(echonet_copy, "train", 8, 2, cache_dir=tmp_path / "cache")
    assert len(opened) == 10
    again = EchoNet(echonet_copy, "train", 8, 2, cache_dir=tmp_path / "cache")
    assert len(opened) == 10 and set(again.num_frames) == {100}  # nothing reopened
    changed = echonet_copy / "Videos" / again.vnames[3]
    os.utime(changed, ns=(0, 0))
    EchoNet(echonet_copy, "train", 8, 2, cache_dir=tmp_path / "cache")
    assert opened[10:] == [changed]  # only the touched video


def test_worker_error_names_the_video(echonet_copy):
    dataset = EchoNet(echonet_copy, "train", frames=8, frequency=2, seed=0)
    broken = dataset.vnames[0]
    (echonet_copy / "Videos" / broken).write_bytes(b"not a video at all")
    loader = make_loader(dataset, batch_size=2, num_workers=1, dist=init_distributed("cpu"), training=False)
    with pytest.raises(BadInputError) as error:
        for _ in batches(loader):
            pass
    message = str(error.value)
    assert message.startswith("data loading failed: video file") and broken in message and "\n" not in message


# ---------------------------------------------------------------- flags, help, warnings

@pytest.mark.parametrize("flag, value, message", [
    ("--print_freq", "0", "argument --print_freq: must be >= 1, got 0"),
    ("--epochs", "-1", "argument --epochs: must be >= 0, got -1"),
    ("--num_workers", "-2", "argument --num_workers: must be >= 0, got -2"),
])
def test_parser_refuses_values_that_cannot_work(flag, value, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_first_stage.main(["--frames", "8", "--frequency", "2", flag, value])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip().endswith(message)


@pytest.mark.parametrize("script", ["train_first_stage", "train_second_stage", "test_with_three_clips"])
def test_help_shows_every_default(script, capsys):
    module = __import__(script)
    with pytest.raises(SystemExit):
        module.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--amp {auto,none,bf16,fp16}" in text and "(default: none)" in text
    assert "--num_workers NUM_WORKERS data-loader worker processes (default: 4)" in text
    if script == "train_first_stage":
        assert "the paper's command uses 1.0) (default: 2.0)" in text


def test_not_a_checkpoint_says_so(tmp_path):
    (tmp_path / "weights.pth").write_text("<html>404 Not Found</html>")
    with pytest.raises(BadInputError, match=r"weights.pth is not a PyTorch checkpoint \(neither a zip archive"):
        load_checkpoint(tmp_path / "weights.pth")


def test_checkpoint_of_another_model_names_the_model_that_fits(tmp_path):
    tiny = get_feature_extractor("uniformer_tiny")
    save_best(tmp_path / "tiny.pth", tiny, get_shallow_mlp_head(128), 0, 1.0)
    # one line, the fitting model first, no list of keys (issue 30)
    with pytest.raises(BadInputError, match=r"^\S*tiny.pth: these are uniformer_tiny weights, not uniformer_small: "
                                            r"use --model uniformer_tiny \(or leave --model out[^\n]*$"):
        build_model("uniformer_small", tmp_path / "tiny.pth")
    torch.save(tiny.state_dict(), tmp_path / "tiny_encoder.pth")
    with pytest.raises(BadInputError, match=r"these are uniformer_tiny weights, not uniformer_small: use --model "
                                            r"uniformer_tiny[^\n]*$"):
        load_pretrained(get_feature_extractor("uniformer_small"), tmp_path / "tiny_encoder.pth")


def test_wandb_without_login_says_offline_in_one_log_line(tmp_path, monkeypatch, caplog):
    import argparse

    from utils.training.wandb_logger import init_wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a wandb key
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    log = logging.getLogger("wandb-test")
    opt = argparse.Namespace(wandb_project_name="p", frames=8)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, logger="wandb-test"):
        warnings.simplefilter("always")
        run = init_wandb(opt, "run", str(tmp_path), True, log)
    try:
        assert not [w for w in caught if "wandb" in str(w.message).lower() and "offline" in str(w.message)]
        assert [r.getMessage() for r in caplog.records if r.name == "wandb-test"] == [
            f"wandb: no WANDB_API_KEY or wandb login found, logging offline to {tmp_path}/wandb "
            "(upload later with `wandb sync`)"]
        assert run.settings.mode == "offline"
        run.log({"Val L1": 1.0})
    finally:
        run.finish()
    assert init_wandb(opt, "run", str(tmp_path), False, log) is None


def test_results_folders_are_ignored_by_git():
    result = subprocess.run(["git", "check-ignore", "test_results/x.pkl", "results/x.pkl", "save/run/best.pth"],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode == 128:
        pytest.skip("not a git checkout")
    assert result.stdout.split() == ["test_results/x.pkl", "results/x.pkl", "save/run/best.pth"]


# ---------------------------------------------------------------- numbers and figures

def test_batched_test_equals_one_clip_at_a_time(echonet):
    torch.manual_seed(0)
    model = get_feature_extractor("uniformer_tiny").eval()
    regressor = get_shallow_mlp_head(model.head.in_features).eval()
    dataset = EchoNetFixedClips(echonet, "all", 8, 2, n_clips=3, seed=1)
    batched = predict(model, regressor, dataset, init_distributed("cpu"), InferenceSettings(max_videos=5))
    with torch.no_grad():
        one_by_one = np.array([[regressor(model(dataset[i]["image"][k:k + 1])[1]).item() for k in range(3)]
                               for i in range(len(dataset))])
    np.testing.assert_allclose(batched["clip_predictions"], one_by_one, atol=1e-4)
    np.testing.assert_allclose(batched["predictions"], one_by_one.mean(axis=1), atol=1e-4)
    assert batched["names"] == dataset.vnames
    assert np.array_equal(batched["starts"], np.stack([dataset.start_indexes[n] for n in dataset.vnames]))


def test_figures():
    rng = np.random.default_rng(0)
    ef = rng.uniform(20, 80, 30)
    fig = prediction_figure(ef, ef + rng.normal(0, 3, 30))
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "Bland-Altman"
    assert "n=30" in fig.axes[0].get_title() and "R² " in fig.axes[0].get_title()
    fig = embedding_map(project(rng.normal(size=(30, 16)), "tsne"), ef, "tsne", title="test split, stage 1")
    assert fig.axes[0].collections[0].get_offsets().shape == (30, 2)
    assert "test split, stage 1" in fig.axes[0].get_title()
    assert "Val TSNE (ef)" in embedding_maps({"tsne": project(rng.normal(size=(30, 16)), "tsne")}, ef, "Val")


def test_non_finite_predictions_are_one_user_error_not_a_scikit_learn_traceback():
    from utils.script.errors import NonFiniteLossError
    from utils.evaluation.metrics import regression_metrics

    with pytest.raises(NonFiniteLossError, match=r"^2 of 3 EF predictions are NaN or inf"):
        regression_metrics([50.0, float("nan"), float("inf")], [40.0, 50.0, 60.0])
    assert regression_metrics([50.0, 55.0], [50.0, 55.0]) == {"mae": 0.0, "rmse": 0.0, "r2": 1.0}
