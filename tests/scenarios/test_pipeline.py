"""The three scripts end to end on the synthetic EchoNet folder (CPU, tiny UniFormer): released outputs,
the learning-rate step, stage-2 resume, the decoded-video cache and the three-clip result files."""
import hashlib
import json
import os
import pickle
import re
import stat

import numpy as np
import pandas as pd
import pytest
import torch

import models
import test_with_three_clips
import train_first_stage
import train_second_stage
import visualize
from conftest import FIXTURES, TINY
from datasets import save_start_indexes
from datasets.synthetic.echonet import make_synthetic_echonet
from utils.evaluation import projection
from utils.files.checkpoint import load_checkpoint
from utils.files.embeddings_file import load_embeddings


@pytest.fixture(scope="module")
def stage1(echonet, tmp_path_factory):
    """Stage 1 for epochs 0 and 1 with the learning-rate step at epoch 1 (10 videos: 2 batches an epoch)."""
    save_root = tmp_path_factory.mktemp("save")
    train_first_stage.main(["--data_folder", str(echonet), *TINY, "--num_workers", "0", "--save_root", str(save_root),
                            "--run_name", "s1", "--batch_size", "4", "--epochs", "1", "--learning_rate", "1e-3",
                            "--lr_step_epoch", "1", "--lr_decay_rate", "0.1", "--aug", "--temp", "1.0"])
    return save_root / "s1"


def reference_distances(run):
    with np.load(run / "best.pth.reference.npz", allow_pickle=False) as reference:
        return reference["val_distances"]


def stage2_args(echonet, stage1, save_root, run_name, epochs, *extra):
    return ["--data_folder", str(echonet), *TINY, "--num_workers", "0", "--save_root", str(save_root),
            "--run_name", run_name, "--pretrained_weights", str(stage1 / "best.pth"), "--batch_size", "4",
            "--epochs", str(epochs), "--learning_rate", "1e-3", "--aug", *extra]


def test_stage1_writes_released_checkpoints(stage1):
    best, last = load_checkpoint(stage1 / "best.pth"), load_checkpoint(stage1 / "last.pth")
    assert list(best) == ["epoch", "model", "regressor", "best_error", "settings"]  # the released keys first
    assert list(last)[:5] == ["opt", "model", "regressor", "epoch", "best_error"]
    assert last["epoch"] == 1  # --epochs 1 runs epochs 0 and 1, as released
    assert best["epoch"] in (0, 1) and np.isfinite(float(best["best_error"]))
    released = json.loads((FIXTURES / "coreecho_checkpoint_keys.json").read_text())
    assert set(released["last_pth"]["opt_attributes_first_stage"]) <= set(vars(last["opt"]))
    assert last["opt"].save_folder == str(stage1) and last["opt"].model_name == "s1"
    assert len(best["regressor"]) == 14 and best["model"]["head.weight"].shape == (1, 128)
    report = json.loads((stage1 / "final_metrics.json").read_text())
    assert set(report) == {"best_epoch", "test", "val", "train"}
    assert all(np.isfinite(report[s]["mae"]) for s in ("test", "val", "train"))
    assert (stage1 / "test_embeddings_tsne.png").read_bytes()[:4] == b"\x89PNG"


def test_outputs_are_readable_by_colleagues(stage1):
    """Atomic writes go through mkstemp (mode 0600): the results must get the umask's mode instead."""
    mask = os.umask(0)
    os.umask(mask)
    for name in ("best.pth", "last.pth", "final_metrics.json", "timing.json", "test_embeddings_tsne.png"):
        assert stat.S_IMODE((stage1 / name).stat().st_mode) == 0o666 & ~mask, name


def test_learning_rate_steps_down_at_lr_step_epoch(stage1):
    last = load_checkpoint(stage1 / "last.pth")
    for name in ("optimizer", "optimizer_regressor"):
        state = last["resume"][name]
        assert [group["lr"] for group in state["param_groups"]] == [pytest.approx(1e-4)]  # 1e-3 x 0.1 at epoch 1
        steps = {float(s["step"]) for s in state["state"].values()}
        assert steps == {4.0}, name  # 2 epochs x 2 batches: the optimiser state carried over the step
    log = (stage1 / "training.log").read_text()
    assert re.search(r"Train \[0\]\[2/2\].* lr 1\.00e-03", log) and re.search(r"Train \[1\]\[2/2\].* lr 1\.00e-04", log)


def test_stage1_log_and_timing(stage1):
    log = (stage1 / "training.log").read_text()
    assert "2 passes in all" in log and "RANDOM weights" in log  # no --pretrained_weight: said loudly
    assert re.search(r"Epoch 1 validation: MAE [\d.]+  RMSE [\d.]+  R² -?[\d.]+ %", log)
    assert "\n  temp: 1.0\n" in log and "\n  frames: 8\n" in log  # options: one key per line, in the file
    saved = re.search(r"Saved in .*: (.*)", log).group(1).split(", ")
    assert sorted(saved) == sorted(["training.log", "best.pth", "last.pth", "timing.json", "final_metrics.json",
                                    "test_embeddings_tsne.png"])
    assert re.search(r"Train \[1\]\[2/2\].*[\d.]+ clips/s, data wait \d+%, epoch ETA \d:\d\d:\d\d", log)
    timing = json.loads((stage1 / "timing.json").read_text())
    assert [e["epoch"] for e in timing["epochs"]] == [0, 1]
    assert all(e["steps"] == 2 and e["clips"] == 16 and e["clips_per_s"] > 0 for e in timing["epochs"])
    assert all(0 <= e["data_wait_seconds"] <= e["seconds"] for e in timing["epochs"])
    assert [v["clips"] for v in timing["validation"]] == [3, 3]
    assert timing["final_report"]["clips"] == 3 + 3 + 10 and timing["peak_gpu_memory_gib"] is None


def test_stage2_trains_only_the_regressor(stage1, echonet, tmp_path):
    train_second_stage.main(stage2_args(echonet, stage1, tmp_path, "s2", 1))
    before, after = load_checkpoint(stage1 / "best.pth"), load_checkpoint(tmp_path / "s2" / "last.pth")
    for key, value in before["model"].items():  # the encoder, BatchNorm statistics included, is frozen
        assert torch.equal(value, after["model"][key]), key
    assert not torch.equal(before["regressor"]["6.weight"], after["regressor"]["6.weight"])
    assert after["best_error"] is None  # as the released stage 2 writes last.pth
    assert after["resume"]["best_error"] < float("inf")
    released = json.loads((FIXTURES / "coreecho_checkpoint_keys.json").read_text())
    assert set(released["last_pth"]["opt_attributes_second_stage"]) <= set(vars(after["opt"]))

    # best.pth's familiarity reference beside it (issue 28): every train video with its FileList EF, tied to
    # the bytes of this best.pth
    with np.load(tmp_path / "s2" / "best.pth.reference.npz", allow_pickle=False) as reference:
        meta = json.loads(str(reference["meta"]))
        filelist = pd.read_csv(echonet / "FileList.csv")
        train = filelist[filelist["Split"].str.upper() == "TRAIN"]
        assert reference["ef"].tolist() == pytest.approx(list(train["EF"]))
        assert reference["embeddings"].shape == (len(train), 128)  # uniformer_tiny's embedding width
        assert len(reference["val_distances"]) == (filelist["Split"].str.upper() == "VAL").sum()
    best_bytes = (tmp_path / "s2" / "best.pth").read_bytes()
    assert meta["checkpoint"] == "sha256:" + hashlib.sha256(best_bytes).hexdigest()
    assert meta["threshold"] == pytest.approx(np.quantile(reference_distances(tmp_path / "s2"), 0.99))

    # Stopped after epoch 0 and resumed: the same regressor as the uninterrupted run.
    train_second_stage.main(stage2_args(echonet, stage1, tmp_path, "s2r", 0, "--reference", "none"))
    train_second_stage.main(stage2_args(echonet, stage1, tmp_path, "s2r", 1, "--resume", "--reference", "none"))
    assert not (tmp_path / "s2r" / "best.pth.reference.npz").exists()
    resumed = load_checkpoint(tmp_path / "s2r" / "last.pth")
    assert resumed["epoch"] == 1
    for key, value in after["regressor"].items():
        torch.testing.assert_close(resumed["regressor"][key], value, rtol=0, atol=1e-6, msg=key)
    assert "Resumed from" in (tmp_path / "s2r" / "training.log").read_text()


def test_stage2_refuses_a_stage1_last_pth_as_resume_point(stage1, echonet, tmp_path):
    with pytest.raises(ValueError, match="stage-1 checkpoint cannot resume stage 2"):
        train_second_stage.main(stage2_args(echonet, stage1, tmp_path, "s2", 0, "--resume",
                                            str(stage1 / "last.pth")))


def plain_metrics(predictions, labels):
    """MAE, RMSE and R² (a fraction) from their definitions, apart from the code under test."""
    predictions, labels = np.asarray(predictions, np.float64), np.asarray(labels, np.float64)
    squares = (predictions - labels) ** 2
    return {"mae": float(np.mean(np.abs(predictions - labels))), "rmse": float(np.sqrt(np.mean(squares))),
            "r2": float(1 - squares.sum() / np.sum((labels - labels.mean()) ** 2))}


def test_three_clip_test_outputs(stage1, echonet, tmp_path, monkeypatch):
    out = tmp_path / "results" / "test.pkl"
    common = ["--data_folder", str(echonet), "--pretrained_weights", str(stage1 / "best.pth"), "--model",
              "uniformer_tiny", "--frames", "8", "--frequency", "2", "--num_workers", "0", "--device", "cpu"]
    metrics = test_with_three_clips.main([*common, "--path_save_test_files", str(out), "--batch_size", "3",
                                          "--save_embeddings"])
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

    # The pickle's numbers are the CSV's numbers.
    recomputed = plain_metrics(table["pred_mean"], table["EF"])
    for key, name in (("mae", "l1"), ("rmse", "l2"), ("r2", "r2")):
        assert float(released["metrics xN clips"][name]) == pytest.approx(recomputed[key], abs=1e-3)
        assert float(released["metrics xN clips"][name]) == pytest.approx(metrics[key], rel=1e-5)
    saved = json.loads((out.parent / "metrics.json").read_text())
    best = saved["best_single_clip"]
    aux = released["best_aux x1 clip"]
    np.testing.assert_allclose(aux["outputs"].numpy()[:, 0], table[f"pred_clip_{best}"], atol=1e-4)
    np.testing.assert_allclose(aux["labels"].numpy()[:, 0], table["EF"], atol=1e-4)
    best_metrics = plain_metrics(table[f"pred_clip_{best}"], table["EF"])
    assert float(released["best_metrics x1 clip"]["l1"]) == pytest.approx(best_metrics["mae"], abs=1e-3)
    assert best == max(range(3), key=lambda k: (saved["per_clip"][k]["r2"], k))
    assert aux["embeddings"].shape == (len(table), 128) and aux["aux"]["name"] == list(table["video"])
    assert saved["n_clips"] == 3 and saved["mean_of_clips"]["mae"] == pytest.approx(metrics["mae"])
    assert saved["timing"]["clips"] == 3 * len(table) and saved["timing"]["clips_per_s"] > 0
    assert (out.parent / "test_plots.png").read_bytes()[:4] == b"\x89PNG"
    assert "R² " in (out.parent / "test.log").read_text()

    # --save_embeddings: visualize.py reuses them without running a model
    saved_embeddings = load_embeddings(out.parent / "embeddings.npz")
    assert list(saved_embeddings["names"]) == list(table["video"]) and saved_embeddings["embeddings"].shape == (3, 128)
    np.testing.assert_allclose(saved_embeddings["predictions"], table["pred_mean"], atol=1e-4)

    def no_model(*args, **kwargs):
        raise AssertionError("the saved embeddings must be reused, not recomputed")

    monkeypatch.setattr(visualize, "predict", no_model)
    monkeypatch.setattr(models.UniFormer, "forward", no_model)
    monkeypatch.setattr(projection, "project", lambda embeddings, method="tsne", seed=None: embeddings[:, :2])
    visualize.main(["embeddings", "--embeddings", str(out.parent / "embeddings.npz"), "--output_dir",
                    str(tmp_path / "vis"), "--methods", "tsne"])
    assert (tmp_path / "vis" / "embeddings.png").exists() and (tmp_path / "vis" / "representation.csv").exists()
    monkeypatch.undo()

    # Again from the saved starts and through the decoded-video cache: the same predictions.
    drawn = out.parent / "test_start_indexes.json"
    assert sorted(json.loads(drawn.read_text())) == sorted(table["video"])
    cache = tmp_path / "cache"
    again = tmp_path / "again" / "test.pkl"
    test_with_three_clips.main([*common, "--path_test_start_indexes", str(drawn), "--path_save_test_files",
                                str(again), "--cache_dir", str(cache)])
    assert len(list(cache.glob("*.npy"))) >= len(table)  # every test video decoded into the cache
    pd.testing.assert_frame_equal(pd.read_csv(again.parent / "predictions.csv"), table)


def test_start_file_missing_videos_is_named(stage1, echonet, tmp_path):
    table = pd.read_csv(echonet / "FileList.csv")
    test_names = [f"{n}.avi" for n in table[table["Split"].str.upper() == "TEST"]["FileName"]]
    partial = {name: np.array([0, 1, 2]) for name in test_names[1:]}
    save_start_indexes(partial, tmp_path / "starts.json")
    with pytest.raises(ValueError, match=test_names[0].split(".")[0]):
        test_with_three_clips.main(["--data_folder", str(echonet), "--pretrained_weights", str(stage1 / "best.pth"),
                                    "--path_test_start_indexes", str(tmp_path / "starts.json"),
                                    "--path_save_test_files", str(tmp_path / "o.pkl"), "--model", "uniformer_tiny",
                                    "--frames", "8", "--frequency", "2", "--device", "cpu", "--num_workers", "0"])
    assert not (tmp_path / "o.pkl").exists()


def epoch_averages(log_text, name):
    """{epoch: running average of `name` at the epoch's last logged step} from training.log."""
    averages = {}
    for line in log_text.splitlines():
        match = re.search(rf"Train \[(\d+)\]\[(\d+)/(\d+)\].* {name} [-+\d.e]+ \(avg ([-+\d.e]+)\)", line)
        if match and match.group(2) == match.group(3):
            averages[int(match.group(1))] = float(match.group(4))
    return averages


@pytest.mark.slow  # several epochs of stage 1, ~11 s
def test_stage1_training_reduces_both_losses(tmp_path):
    data = tmp_path / "data"
    make_synthetic_echonet(data, n=30, seed=3)
    train_first_stage.main(["--data_folder", str(data), *TINY, "--num_workers", "0", "--save_root", str(tmp_path),
                            "--run_name", "learn", "--batch_size", "6", "--epochs", "7", "--learning_rate", "2e-3",
                            "--temp", "1.0", "--lr_step_epoch", "-1"])
    log = (tmp_path / "learn" / "training.log").read_text()
    rnc, l1 = epoch_averages(log, "RnC"), epoch_averages(log, "L1")
    assert sorted(rnc) == list(range(8)) and sorted(l1) == list(range(8))
    # the encoder learns to order embeddings by EF, the regressor learns EF from them
    assert sum(rnc[e] for e in (5, 6, 7)) / 3 < rnc[0] - 0.05, rnc
    assert sum(l1[e] for e in (5, 6, 7)) / 3 < l1[0] - 1.0, l1
