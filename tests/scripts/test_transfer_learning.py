"""transfer_learning.py end to end on generated CAMUS / HMC-QU sets and a labelled folder (CPU, tiny UniFormer,
4-frame clips): folds shared by all checkpoints, a linear head that learns, the embedding cache, classification
outputs, fine-tuning through Run with --resume, and one-line errors. The clips themselves:
tests/datasets/test_transfer_datasets.py; the sources: tests/datasets/sources."""
import json
import os
import re

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

import transfer_learning
from datasets.sources import camus
from datasets.synthetic.transfer import generated_labels, make_synthetic_camus, make_synthetic_hmcqu
from datasets.transfer import CAMUS_MEAN, CAMUS_STD, TrainClips, affine_parameters
from models import get_feature_extractor, get_shallow_mlp_head, uniformer_tiny
from models.uniformer import UniFormer
from utils.files.checkpoint import load_checkpoint, save_best
from utils.script.cli import run_main
from utils.script.errors import BadInputError
from utils.training.run import Run

FAST = ["--model", "uniformer_tiny", "--frames", "4", "--frequency", "2", "--device", "cpu", "--num_workers", "0"]
N_BRIGHT = 12  # patients of the CAMUS set the linear head must learn on (both views: 24 videos)
DIM = (0.3, 1.0)
# 16 training clips of 128 numbers: the linear head needs real weight decay (AdamW's is multiplied by the
# learning rate). Over 6 generated sets x 3 seeds x 2 checkpoints its mean MAE was 0.27-0.66 x the
# training-mean MAE and Pearson r 0.51-0.94 (with the default 1e-4: up to 0.80 x, r down to 0.39).
HEAD = ["--head_weight_decay", "10"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bright_camus(tmp_path_factory):
    """A generated CAMUS set whose EF is replaced by a label every encoder's embeddings carry, even random ones
    (a random UniFormer hardly encodes the synthetic EF; a trained one would, but training one takes minutes):
    each patient's two sequences are dimmed by a factor s in DIM and its cfg EF becomes 20 + 60 (s - 0.3) / 0.7."""
    import nibabel  # requirements.txt installs it: a broken install fails here rather than skipping
    root = make_synthetic_camus(tmp_path_factory.mktemp("camus_bright"), n=N_BRIGHT, seed=11)
    rng = np.random.default_rng(5)
    for folder in sorted((root / "database_nifti").iterdir()):
        scale = rng.uniform(*DIM)
        for sequence in folder.glob("*.nii.gz"):
            image = nibabel.load(sequence)
            dimmed = np.rint(np.asarray(image.dataobj) * scale).astype(np.uint8)
            nibabel.save(nibabel.Nifti1Image(dimmed, image.affine), sequence)
        for cfg in folder.glob("Info_*.cfg"):
            ef = 20 + 60 * (scale - DIM[0]) / (DIM[1] - DIM[0])
            cfg.write_text(re.sub(r"(?m)^(EF|LVef): .*$", f"EF: {ef:.2f}", cfg.read_text()))
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A CoReEcho checkpoint (released format, epoch 3) and a Kinetics-400-format state dict of seeded random
    uniformer_tiny weights."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(1)
    model = get_feature_extractor("uniformer_tiny")
    save_best(folder / "coreecho.pth", model, get_shallow_mlp_head(model.head.in_features, 1), 3, 7.5)
    torch.save(uniformer_tiny(num_classes=400).state_dict(), folder / "k400.pth")
    return folder


@pytest.fixture(scope="module")
def linear_run(bright_camus, checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("linear")
    transfer_learning.main(["--dataset", "camus", "--data_folder", str(bright_camus), *FAST, "--folds", "3",
                            "--views", "both", "--pretrained_weights", "none", str(checkpoints / "coreecho.pth"), *HEAD,
                            "--output_dir", str(out / "run"), "--cache_dir", str(out / "cache")])
    return out


def results_of(folder):
    return json.loads((folder / "results.json").read_text())


def test_camus_folds_are_the_protocol_blocks_for_every_checkpoint(linear_run):
    results = results_of(linear_run / "run")
    patients = [f"patient{i:04d}" for i in range(1, N_BRIGHT + 1)]
    blocks = [patients[4 * k:4 * k + 4] for k in range(3)]  # sorted patients, contiguous blocks
    assert [f["test_patients"] for f in results["folds"]] == blocks
    assert [c["kind"] for c in results["checkpoints"]] == ["none", "coreecho"]
    assert results["checkpoints"][1]["epoch"] == 3
    for checkpoint in results["checkpoints"]:
        assert [f["test_patients"] for f in checkpoint["folds"]] == blocks
        for fold, block in zip(checkpoint["folds"], blocks):
            assert fold["train_patients"] == sorted(set(patients) - set(block))
            assert (fold["n_test_videos"], fold["n_train_videos"]) == (8, 16)  # both views of each patient
    predictions = pd.read_csv(linear_run / "run" / "predictions.csv")
    assert len(predictions) == 2 * 2 * N_BRIGHT
    for _, rows in predictions.groupby("checkpoint"):
        assert sorted(rows["video"]) == sorted(f"{p}_{v}" for p in patients for v in ("4CH", "2CH"))
        assert all(rows["fold"] == rows["patient"].map({p: k for k, b in enumerate(blocks) for p in b}))


def test_linear_head_learns_and_reports_what_it_predicted(linear_run):
    results = results_of(linear_run / "run")
    baseline = results["baseline"]["mean"]["mae"]
    predictions = pd.read_csv(linear_run / "run" / "predictions.csv")
    for checkpoint in results["checkpoints"]:
        # a random UniFormer's embeddings carry the brightness that sets this label: far better than the mean
        assert checkpoint["mean"]["mae"] < 0.75 * baseline, (checkpoint["label"], checkpoint["mean"], baseline)
        rows = predictions[predictions["checkpoint"] == checkpoint["label"]]
        for fold in checkpoint["folds"]:
            part = rows[rows["fold"] == fold["index"]]
            assert fold["metrics"]["mae"] == pytest.approx((part["prediction"] - part["label"]).abs().mean(), rel=1e-4)
        assert checkpoint["mean"]["mae"] == pytest.approx(np.mean([f["metrics"]["mae"] for f in checkpoint["folds"]]))
        assert checkpoint["mean"]["pearson_r"] > 0.4
    summary = (linear_run / "run" / "summary.md").read_text()
    assert "| Checkpoint | Kind | MAE ↓ | RMSE ↓ | R² (%) ↑ | Pearson r ↑ |" in summary
    assert "| coreecho.pth | CoReEcho (epoch 3) |" in summary and "| training-fold mean | baseline |" in summary
    table = pd.read_csv(linear_run / "run" / "summary.csv")
    assert list(table["checkpoint"]) == ["none", "coreecho.pth", "training-fold mean"]
    assert table["mae_mean"].iloc[0] == pytest.approx(results["checkpoints"][0]["mean"]["mae"], rel=1e-5)
    for name in ("ef_scatter_1_none.png", "ef_scatter_2_coreecho.png"):
        assert (linear_run / "run" / "plots" / name).read_bytes()[:4] == b"\x89PNG"


def test_embedding_cache_is_reused_and_follows_the_checkpoint_file(linear_run, bright_camus, checkpoints,
                                                                   monkeypatch):
    forwards = {"n": 0}
    original = UniFormer.forward

    def forbidden(self, x):
        raise AssertionError("the encoder ran although every embedding is cached")

    def counted(self, x):
        forwards["n"] += 1
        return original(self, x)

    # each video has its own cache entry: a run on the 4CH views alone finds them all
    args = ["--dataset", "camus", "--data_folder", str(bright_camus), *FAST, "--folds", "3", "--views", "4CH",
            "--pretrained_weights", "none", str(checkpoints / "coreecho.pth"), "--cache_dir", str(linear_run / "cache")]
    monkeypatch.setattr(UniFormer, "forward", forbidden)
    transfer_learning.main(args + ["--output_dir", str(linear_run / "again")])
    first, again = results_of(linear_run / "run"), results_of(linear_run / "again")
    assert [c["videos_embedded"] for c in first["checkpoints"]] == [2 * N_BRIGHT] * 2
    assert [c["videos_embedded"] for c in again["checkpoints"]] == [0, 0]
    first_rows = pd.read_csv(linear_run / "run" / "predictions.csv").set_index(["checkpoint", "video"])
    again_rows = pd.read_csv(linear_run / "again" / "predictions.csv").set_index(["checkpoint", "video"])
    assert len(again_rows) == 2 * N_BRIGHT and all(v.endswith("_4CH") for _, v in again_rows.index)
    # the same embeddings and labels: the labels match row by row (predictions differ: fewer training videos)
    assert (again_rows["label"] == first_rows.loc[again_rows.index, "label"]).all()

    checkpoint = checkpoints / "coreecho.pth"  # touched: only its embeddings are computed again
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    monkeypatch.setattr(UniFormer, "forward", counted)
    transfer_learning.main(args + ["--output_dir", str(linear_run / "touched")])
    assert [c["videos_embedded"] for c in results_of(linear_run / "touched")["checkpoints"]] == [0, N_BRIGHT]
    assert forwards["n"] == N_BRIGHT  # one clip per CAMUS video, one forward per clip on a CPU


@pytest.fixture(scope="module")
def hmcqu_root(tmp_path_factory):
    """8 A4C recordings of 10 frames at 25 fps: 20 frames at 50 fps, 2 clips each with --hmcqu_frames all (starts
    0 and 7 of 4 frames every 4th); the sheets in the published layout, saved as CSV."""
    return make_synthetic_hmcqu(tmp_path_factory.mktemp("hmcqu"), n=8, seed=2, n_frames=10, with_unmatched=True,
                                sheet_format="csv")


@pytest.fixture(scope="module")
def video_cache(tmp_path_factory):
    """One cache for the HMC-QU and folder runs: the folder run finds the embeddings of the same files."""
    return tmp_path_factory.mktemp("video_cache")


def test_hmcqu_classification_outputs(hmcqu_root, checkpoints, video_cache, tmp_path):
    out = tmp_path / "out"
    transfer_learning.main(["--dataset", "hmcqu", "--data_folder", str(hmcqu_root), *FAST, "--frequency", "4",
                            "--folds", "2", "--pretrained_weights", str(checkpoints / "k400.pth"),
                            "--output_dir", str(out), "--cache_dir", str(video_cache), "--hmcqu_frames", "all"])
    results = results_of(out)
    assert results["settings"]["task"] == "classification" and results["checkpoints"][0]["kind"] == "kinetics400"
    mi = generated_labels(hmcqu_root / "A4C.csv")["mi"].to_numpy()[:8]  # the 8 recordings (not ES9999)
    for fold in results["folds"]:  # stratified: both classes in every test fold
        assert {int(mi[int(p[2:]) - 1]) for p in fold["test_patients"]} == {0, 1}
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 8 and predictions["probability"].between(0, 1).all()
    assert (predictions["prediction"] == (predictions["probability"] >= 0.5).astype(int)).all()
    assert list(predictions.sort_values("video")["label"]) == list(mi)
    fold = results["checkpoints"][0]["folds"][0]
    part = predictions[predictions["fold"] == 0]
    assert fold["metrics"]["accuracy"] == pytest.approx((part["prediction"] == part["label"]).mean())
    assert set(fold["metrics"]) >= {"accuracy", "sensitivity", "specificity", "f1", "auroc"}
    summary = (out / "summary.md").read_text()
    assert "| Accuracy (%) ↑ | Sensitivity (%) ↑ | Specificity (%) ↑ | F1 (%) ↑ | AUROC ↑ |" in summary
    assert "| majority class | baseline |" in summary
    assert (out / "plots" / "roc_1_k400.png").read_bytes()[:4] == b"\x89PNG"
    entries = [np.load(path) for path in video_cache.glob("kinetics400-*/*.npy")]
    assert len(entries) == 8 and all(e.shape == (2, 128) for e in entries)  # 2 clips per recording, cached
    log = (out / "transfer.log").read_text()
    assert "ES9999" in log and "ES9998" in log  # the sheet row without video and the video without row


def test_hmcqu_sheet_with_other_column_names(hmcqu_root, checkpoints, video_cache, tmp_path):
    root = tmp_path / "renamed"
    root.mkdir()
    (root / "HMC-QU").symlink_to(hmcqu_root / "HMC-QU")
    sheet = pd.read_csv(hmcqu_root / "A4C.csv", header=1, dtype=str, encoding="utf-8-sig")  # one header row
    segments = [c for c in sheet.columns if c.startswith("SEG")]
    renamed = sheet.rename(columns={sheet.columns[0]: "Recording",
                                    **{c: f"Segment {k}" for k, c in enumerate(segments, 1)}})
    renamed.to_csv(root / "A4C.csv", index=False)  # words, the footnote row, a header of other names
    out = tmp_path / "out"
    transfer_learning.main(["--dataset", "hmcqu", "--data_folder", str(root), *FAST, "--frequency", "4",
                            "--folds", "2", "--pretrained_weights", str(checkpoints / "k400.pth"),
                            "--output_dir", str(out), "--cache_dir", str(video_cache), "--video_column", "Recording",
                            "--label_columns", *[f"Segment {k}" for k in range(1, len(segments) + 1)]])
    mi = generated_labels(hmcqu_root / "A4C.csv")["mi"].to_numpy()[:8]
    assert list(pd.read_csv(out / "predictions.csv").sort_values("video")["label"]) == list(mi)


def test_folder_with_labels_csv_keeps_patients_together(hmcqu_root, checkpoints, video_cache, tmp_path):
    videos = hmcqu_root / "HMC-QU" / "A4C"
    names = sorted(p.name for p in videos.glob("ES000*.avi"))[:6]
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in names:
        (folder / name).symlink_to(videos / name)
    efs = [35.5, 61.0, 48.25, 70.0, 29.0, 55.0]
    patients = ["A", "A", "B", "C", "C", "D"]
    pd.DataFrame({"file": names, "label": efs, "patient": patients}).to_csv(folder / "labels.csv", index=False)
    out = tmp_path / "out"
    transfer_learning.main(["--dataset", "folder", "--data_folder", str(folder), *FAST, "--frequency", "4",
                            "--folds", "2", "--pretrained_weights", str(checkpoints / "k400.pth"), "--mode", "mlp",
                            "--head_epochs", "20",
                            "--output_dir", str(out), "--cache_dir", str(video_cache)])
    results = results_of(out)
    assert results["settings"]["task"] == "regression"  # labels that are not all 0 / 1
    assert [f["test_patients"] for f in results["folds"]] == [["A", "B"], ["C", "D"]]
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions["video"]) == names and list(predictions["label"]) == efs
    assert list(predictions["fold"]) == [0, 0, 0, 1, 1, 1]
    assert "R² (%)" in (out / "summary.md").read_text() and "shallow MLP head" in (out / "summary.md").read_text()
    assert results["checkpoints"][0]["videos_embedded"] in (0, 6)  # 0 when the HMC-QU test cached these files


def test_finetune_writes_resumable_fold_checkpoints(tmp_path, monkeypatch):
    data = make_synthetic_camus(tmp_path / "camus", n=4, seed=3)
    out = tmp_path / "out"
    args = ["--dataset", "camus", "--data_folder", str(data), *FAST, "--folds", "2", "--mode", "finetune",
            "--views", "both", "--pretrained_weights", "none", "--batch_size", "2", "--output_dir", str(out),
            "--print_freq", "1"]
    transfer_learning.main(args + ["--epochs", "1"])
    first = results_of(out)
    for k in range(2):
        folder = out / "finetune" / "1_none" / f"fold_{k}"
        last = load_checkpoint(folder / "last.pth")
        assert last["epoch"] == 0 and last["resume"]["stage"] == "finetune" and "optimizer" in last["resume"]
        assert last["model"]["head.weight"].shape == (1, 128) and last["regressor"]["6.weight"].shape == (1, 128)
        best = load_checkpoint(folder / "best.pth")
        assert best["epoch"] == 0
        # the fold's checkpoints say what they are (issue 30): CAMUS fine-tuning's released normalisation
        assert {k: best["settings"][k] for k in ("stage", "task", "dataset", "mean", "std")} == {
            "stage": "finetune", "task": "regression", "dataset": "camus",
            "mean": [40.94405] * 3, "std": [54.723774] * 3}
        done = json.loads((folder / "fold_result.json").read_text())
        assert done["epochs"] == 1 and len(done["outputs"]) == 4  # 2 test patients x 2 views
    assert np.isfinite(first["checkpoints"][0]["mean"]["mae"])

    def no_training(*args, **kwargs):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(Run, "training_epoch", no_training)
    transfer_learning.main(args + ["--epochs", "1", "--resume"])  # both folds finished: kept as they are
    assert results_of(out)["checkpoints"][0]["mean"] == first["checkpoints"][0]["mean"]
    monkeypatch.undo()

    transfer_learning.main(args + ["--epochs", "2", "--resume"])  # one more epoch: continues from last.pth
    for k in range(2):
        assert load_checkpoint(out / "finetune" / "1_none" / f"fold_{k}" / "last.pth")["epoch"] == 1
    assert (out / "transfer.log").read_text().count("Resumed from") == 2
    with pytest.raises(BadInputError, match=r"fold_0/fold\.json: this fold was started with other settings"):
        transfer_learning.main(args + ["--epochs", "2", "--resume", "--learning_rate", "1e-3"])
    info = next(data.rglob("*.cfg"))  # a video's EF file edited since: its folds are another experiment
    os.utime(info, ns=(info.stat().st_atime_ns, info.stat().st_mtime_ns + 10**9))
    with pytest.raises(BadInputError, match=r"fold_0/fold\.json: this fold was started with other settings"):
        transfer_learning.main(args + ["--epochs", "2", "--resume"])


def test_hmcqu_published_release_end_to_end(checkpoints, tmp_path):
    """Both views as downloaded (.xlsx sheets with two header rows, words, names as typed, '*' marks and the
    footnote), clips over the annotated cycles, a patient's two views in one fold."""
    import openpyxl  # noqa: F401  (pandas reads .xlsx with it; requirements.txt installs it: no skip)
    root = make_synthetic_hmcqu(tmp_path / "HMC-QU release", n=8, seed=9, n_frames=10)
    out = tmp_path / "out"
    transfer_learning.main(["--dataset", "hmcqu", "--data_folder", str(root), *FAST, "--folds", "2",
                            "--hmcqu_view", "both", "--pretrained_weights", str(checkpoints / "k400.pth"),
                            "--output_dir", str(out)])
    sheets = [generated_labels(root / f"{view}.xlsx") for view in ("A4C", "A2C")]
    truth = {echo.rstrip("*"): mi for sheet in sheets for echo, mi in zip(sheet["echo"], sheet["mi"])}
    predictions = pd.read_csv(out / "predictions.csv")
    assert dict(zip(predictions["video"], predictions["label"])) == truth and len(predictions) == 8 + 6
    assert predictions.groupby("patient")["fold"].nunique().max() == 1  # both views of a patient: one fold
    assert predictions.groupby("patient").size().max() == 2 and predictions["patient"].nunique() == 8
    results = results_of(out)
    assert results["settings"]["hmcqu_frames"] == "cycle" and results["settings"]["normalisation"] == "echonet"
    log = (out / "transfer.log").read_text()
    assert "14 videos of 8 patients (HMC-QU A4C + A2C; classification" in log and "over the annotated cycle" in log


def released_affine(frames, angle, shift, scale):
    """uint8 [T, H, W] under torchvision's bilinear affine (the released augmentation), black outside; it turns
    positive angles clockwise, the project counter-clockwise."""
    return TF.affine(torch.from_numpy(np.ascontiguousarray(frames)), angle=-angle, translate=list(shift), scale=scale,
                     shear=[0.0], interpolation=InterpolationMode.BILINEAR, fill=0).numpy()


def test_camus_finetune_defaults_to_the_released_protocol(tmp_path, monkeypatch):
    """--dataset camus --mode finetune without options: the 4CH sequences, clips normalised with the released CAMUS
    mean / std and augmented by the random affine transform; the frozen modes keep the EchoNet normalisation."""
    data = make_synthetic_camus(tmp_path / "camus", n=6, seed=8)
    seen, getitem = [], TrainClips.__getitem__

    def spy(self, index):
        seen.append((self, index, getitem(self, index)))
        return seen[-1][2]

    monkeypatch.setattr(TrainClips, "__getitem__", spy)
    transfer_learning.main(["--dataset", "camus", "--data_folder", str(data), *FAST, "--folds", "2", "--mode",
                            "finetune", "--pretrained_weights", "none", "--batch_size", "2", "--epochs", "1",
                            "--output_dir", str(tmp_path / "out")])
    settings = results_of(tmp_path / "out")["settings"]
    assert (settings["views"], settings["normalisation"], settings["aug"]) == (["4CH"], "camus", "affine")
    assert all(v.endswith("_4CH") for v in pd.read_csv(tmp_path / "out" / "predictions.csv")["video"])
    assert len(seen) == 2 * 2  # 2 folds x 2 training videos (of 3 training patients, 1 chooses best.pth)
    for clips, index, item in seen:
        assert (clips.clip_spec.normalisation, clips.clip_spec.aug) == ("camus", "affine")
        generator = clips.item_generator(index)
        torch.randint(1, (1,), generator=generator)  # the start (a CAMUS video is one clip)
        grey = camus.load_frames(clips.videos[index].camus, 4)
        angle, shift, scale = affine_parameters(generator, 112)
        # torchvision is the reference. Inside the frame (all four bilinear neighbours in it) cv2's fixed-point
        # weights are at most 1 grey level off (measured: 0.003 % of those pixels); on the one-pixel ring at the
        # frame's edge cv2 blends with black (up to 60 levels off), so beyond the ring the check is: black
        white = released_affine(np.full_like(grey[:1], 255), angle, shift, scale)[0]
        inside, outside = white == 255, cv2.erode((white == 0).astype(np.uint8), np.ones((3, 3), np.uint8)) == 1
        image = item["image"].numpy() * CAMUS_STD + CAMUS_MEAN
        difference = np.abs(image - released_affine(grey, angle, shift, scale)[None])
        assert inside.mean() > 0.5 and difference[..., inside].max() < 1.001
        assert (difference[..., inside] > 0.5).mean() < 0.001 and np.abs(image[..., outside]).max() < 1e-3
    for argv, expected in (([], ("echonet", "none")), (["--mode", "finetune", "--aug"], ("camus", "shift")),
                           (["--mode", "mlp", "--normalisation", "camus"], ("camus", "none"))):
        opt = transfer_learning.parse_option(["--dataset", "camus", "--data_folder", ".", "--pretrained_weights",
                                              "none", *argv])
        assert (opt.normalisation, opt.aug, opt.views) == (*expected, ("4CH",))


def one_line_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: transfer_learning.main(argv))
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1 and len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_bad_inputs_fail_in_one_line(bright_camus, tmp_path, capsys):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "odd.pth")
    common = ["--dataset", "camus", *FAST, "--output_dir", str(tmp_path / "out")]
    line = one_line_error(common + ["--data_folder", str(bright_camus), "--pretrained_weights", "none",
                                    str(tmp_path / "odd.pth")], capsys)
    assert "odd.pth: unknown checkpoint kind" in line
    line = one_line_error(common + ["--data_folder", str(tmp_path / "nowhere"), "--pretrained_weights", "none"], capsys)
    assert "CAMUS folder" in line and "nowhere" in line and "does not exist" in line
    line = one_line_error(common + ["--data_folder", str(bright_camus), "--pretrained_weights",
                                    str(tmp_path / "missing.pth")], capsys)
    assert "missing.pth does not exist" in line
    line = one_line_error(common + ["--data_folder", str(bright_camus), "--pretrained_weights", "none",
                                    "--folds", str(N_BRIGHT + 1)], capsys)
    assert f"--folds {N_BRIGHT + 1}" in line and f"{N_BRIGHT} patient" in line
    two_patients = make_synthetic_camus(tmp_path / "camus2", n=2, seed=4)
    line = one_line_error(common + ["--data_folder", str(two_patients), "--pretrained_weights", "none", "--folds", "2",
                                    "--mode", "finetune", "--epochs", "1"], capsys)
    assert "fold 0: cannot set aside validation patients among its 1 training patient(s)" in line
    assert not (tmp_path / "out" / "results.json").exists()
