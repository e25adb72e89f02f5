"""The three scripts end to end on a tiny synthetic EchoNet-format dataset (CPU, tiny UniFormer)."""
import json
import re
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import test_with_three_clips
import train_first_stage
import train_second_stage
from datasets import save_start_indexes
from datasets.synthetic import make_synthetic_echonet
from utils.checkpoint import load_checkpoint
from utils.metrics import regression_metrics

FIXTURES = Path(__file__).parent / "fixtures"
TINY = ["--model", "uniformer_tiny", "--frames", "8", "--frequency", "2", "--num_workers", "0", "--device", "cpu",
        "--print_freq", "1", "--trial", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("echonet")
    make_synthetic_echonet(root, n=16, seed=0)
    return root


@pytest.fixture(scope="module")
def stage1(data, tmp_path_factory):
    save_root = tmp_path_factory.mktemp("save")
    train_first_stage.main(["--data_folder", str(data), *TINY, "--save_root", str(save_root), "--run_name", "s1",
                            "--batch_size", "4", "--epochs", "1", "--learning_rate", "1e-3", "--aug", "--temp", "1.0"])
    return save_root / "s1"


def test_stage1_writes_released_checkpoints(stage1):
    best, last = load_checkpoint(stage1 / "best.pth"), load_checkpoint(stage1 / "last.pth")
    assert list(best) == ["epoch", "model", "regressor", "best_error"]
    assert list(last)[:5] == ["opt", "model", "regressor", "epoch", "best_error"]
    assert last["epoch"] == 1  # --epochs 1 runs epochs 0 and 1, as released
    assert best["epoch"] in (0, 1) and np.isfinite(float(best["best_error"]))
    released = json.loads((FIXTURES / "coreecho_checkpoint_keys.json").read_text())
    assert set(released["last_pth"]["opt_attributes_first_stage"]) <= set(vars(last["opt"]))
    assert len(best["regressor"]) == 14 and best["model"]["head.weight"].shape == (1, 128)
    assert "optimizer" in last["resume"] and "optimizer_regressor" in last["resume"]
    report = json.loads((stage1 / "final_metrics.json").read_text())
    assert set(report) == {"best_epoch", "test", "val", "train"}
    assert all(np.isfinite(report[s]["mae"]) for s in ("test", "val", "train"))
    log = (stage1 / "training.log").read_text()
    assert "2 passes in all" in log and "Test" in log
    assert (stage1 / "test_embeddings_tsne.png").read_bytes()[:4] == b"\x89PNG"


def test_stage2_trains_only_the_regressor(stage1, data, tmp_path):
    train_second_stage.main(["--data_folder", str(data), *TINY, "--save_root", str(tmp_path), "--run_name", "s2",
                             "--pretrained_weights", str(stage1 / "best.pth"), "--batch_size", "4", "--epochs", "1",
                             "--learning_rate", "1e-3", "--aug"])
    before, after = load_checkpoint(stage1 / "best.pth"), load_checkpoint(tmp_path / "s2" / "last.pth")
    for key, value in before["model"].items():  # the encoder, BatchNorm statistics included, is frozen
        assert torch.equal(value, after["model"][key]), key
    assert not torch.equal(before["regressor"]["6.weight"], after["regressor"]["6.weight"])
    assert after["best_error"] is None  # as the released stage 2 writes last.pth
    assert after["resume"]["best_error"] < float("inf")
    released = json.loads((FIXTURES / "coreecho_checkpoint_keys.json").read_text())
    assert set(released["last_pth"]["opt_attributes_second_stage"]) <= set(vars(after["opt"]))


def test_stage2_without_checkpoint_fails_clearly(data, tmp_path):
    with pytest.raises(ValueError, match="--pretrained_weights"):
        train_second_stage.main(["--data_folder", str(data), *TINY, "--save_root", str(tmp_path)])


def test_three_clip_test_outputs(stage1, data, tmp_path):
    out = tmp_path / "results" / "test.pkl"
    metrics = test_with_three_clips.main(["--data_folder", str(data), "--pretrained_weights", str(stage1 / "best.pth"),
                                          "--path_save_test_files", str(out), "--model", "uniformer_tiny",
                                          "--frames", "8", "--frequency", "2", "--num_workers", "0",
                                          "--device", "cpu", "--batch_size", "3"])
    with open(out, "rb") as f:
        released = pickle.load(f)
    assert list(released) == ["N clips", "metrics xN clips", "best_metrics x1 clip", "best_aux x1 clip"]
    assert released["N clips"] == 3
    table = pd.read_csv(out.parent / "predictions.csv")
    assert list(table.columns) == ["video", "EF", "start_0", "start_1", "start_2", "pred_clip_0", "pred_clip_1",
                                   "pred_clip_2", "pred_mean"]
    assert table["video"].str.endswith(".avi").all()
    clip_mean = table[["pred_clip_0", "pred_clip_1", "pred_clip_2"]].mean(axis=1)
    np.testing.assert_allclose(table["pred_mean"], clip_mean, atol=2e-4)
    recomputed = regression_metrics(table["pred_mean"], table["EF"])
    assert recomputed["mae"] == pytest.approx(metrics["mae"], abs=1e-3)
    assert float(released["metrics xN clips"]["l1"]) == pytest.approx(metrics["mae"], rel=1e-5)
    assert float(released["metrics xN clips"]["l2"]) == pytest.approx(metrics["rmse"], rel=1e-5)
    aux = released["best_aux x1 clip"]
    assert aux["outputs"].shape == (len(table), 1) and aux["embeddings"].shape == (len(table), 128)
    assert aux["aux"]["name"] == list(table["video"])
    saved = json.loads((out.parent / "metrics.json").read_text())
    assert saved["n_clips"] == 3 and saved["mean_of_clips"]["mae"] == pytest.approx(metrics["mae"])
    assert len(saved["per_clip"]) == 3
    assert (out.parent / "test_plots.png").read_bytes()[:4] == b"\x89PNG"
    drawn = json.loads((out.parent / "test_start_indexes.json").read_text())  # drawn starts are kept
    assert sorted(drawn) == sorted(table["video"])

    # Repeating the test with the saved start file gives the same predictions.
    again = tmp_path / "again" / "test.pkl"
    test_with_three_clips.main(["--data_folder", str(data), "--pretrained_weights", str(stage1 / "best.pth"),
                                "--path_test_start_indexes", str(out.parent / "test_start_indexes.json"),
                                "--path_save_test_files", str(again), "--model", "uniformer_tiny", "--frames", "8",
                                "--frequency", "2", "--num_workers", "0", "--device", "cpu"])
    pd.testing.assert_frame_equal(pd.read_csv(again.parent / "predictions.csv"), table)


def test_start_file_missing_videos_is_named(stage1, data, tmp_path):
    table = pd.read_csv(data / "FileList.csv")
    test_names = [f"{n}.avi" for n in table[table["Split"].str.upper() == "TEST"]["FileName"]]
    partial = {name: np.array([0, 1, 2]) for name in test_names[1:]}
    save_start_indexes(partial, tmp_path / "starts.json")
    with pytest.raises(ValueError, match=test_names[0].split(".")[0]):
        test_with_three_clips.main(["--data_folder", str(data), "--pretrained_weights", str(stage1 / "best.pth"),
                                    "--path_test_start_indexes", str(tmp_path / "starts.json"),
                                    "--path_save_test_files", str(tmp_path / "o.pkl"), "--model", "uniformer_tiny",
                                    "--frames", "8", "--frequency", "2", "--device", "cpu", "--num_workers", "0"])


def test_wrong_architecture_checkpoint_fails_clearly(stage1, data, tmp_path):
    with pytest.raises(ValueError, match="do not fit"):
        test_with_three_clips.main(["--data_folder", str(data), "--pretrained_weights", str(stage1 / "best.pth"),
                                    "--path_save_test_files", str(tmp_path / "o.pkl"), "--model", "uniformer_small",
                                    "--frames", "8", "--frequency", "2", "--device", "cpu", "--num_workers", "0"])


def test_missing_data_folder_fails_clearly(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match="no_such_folder"):
        train_first_stage.main(["--data_folder", str(tmp_path / "no_such_folder"), *TINY,
                                "--save_root", str(tmp_path / "save")])


def test_unwritable_save_root_fails_clearly(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="file"):
        train_first_stage.main(["--data_folder", str(data), *TINY, "--save_root", str(blocker)])


def epoch_averages(log_text, name):
    """{epoch: running average of `name` at the epoch's last logged step} from training.log."""
    averages = {}
    for line in log_text.splitlines():
        match = re.search(rf"Train \[(\d+)\]\[(\d+)/(\d+)\].* {name} [\d.]+ \(avg ([\d.]+)\)", line)
        if match and match.group(2) == match.group(3):
            averages[int(match.group(1))] = float(match.group(4))
    return averages


def test_stage1_training_reduces_both_losses(tmp_path):
    data = tmp_path / "data"
    make_synthetic_echonet(data, n=30, seed=3)
    train_first_stage.main(["--data_folder", str(data), *TINY, "--save_root", str(tmp_path), "--run_name", "learn",
                            "--batch_size", "6", "--epochs", "7", "--learning_rate", "2e-3", "--temp", "1.0",
                            "--lr_step_epoch", "-1"])
    log = (tmp_path / "learn" / "training.log").read_text()
    rnc, l1 = epoch_averages(log, "RnC"), epoch_averages(log, "L1")
    assert sorted(rnc) == list(range(8)) and sorted(l1) == list(range(8))
    # the encoder learns to order embeddings by EF, the regressor learns EF from them
    assert sum(rnc[e] for e in (5, 6, 7)) / 3 < rnc[0] - 0.05, rnc
    assert sum(l1[e] for e in (5, 6, 7)) / 3 < l1[0] - 1.0, l1


def test_wandb_offline_run_logs_metrics_and_embedding_maps(data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    train_first_stage.main(["--data_folder", str(data), *TINY, "--save_root", str(tmp_path), "--run_name", "w",
                            "--batch_size", "4", "--epochs", "0", "--wandb", "--wandb_project_name", "test"])
    runs = list((tmp_path / "w" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")) and list(runs[0].rglob("*TSNE*.png"))
