"""visualize.py end to end on the synthetic EchoNet folder (CPU, tiny UniFormer): a trained model's embeddings
are ordered by EF clearly better than at random init, the files of `embeddings` (two checkpoints, --clips all,
reused .npz files without any forward pass), Grad-CAM videos and strips of `cam`, and the one-line errors. The
embeddings.npz format itself: tests/utils/files/test_embeddings_file.py."""
import json
import os
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import models
import train_first_stage
import utils.evaluation.projection as projection
import visualize
from conftest import TINY, fake_projection, read_all_frames
from datasets import EchoNetTest, decode_video, save_start_indexes
from models import build_model, get_feature_extractor, get_shallow_mlp_head
from utils.files.checkpoint import save_best
from utils.script.cli import run_main
from utils.engine.distributed import init_distributed
from utils.files.embeddings_file import load_embeddings, save_embeddings
from utils.script.errors import BadInputError
from utils.evaluation.inference import predict
from utils.evaluation.representation import representation_metrics

MODEL = ["--model", "uniformer_tiny", "--frames", "8", "--frequency", "2", "--device", "cpu"]
EMBED = [*MODEL, "--num_workers", "0", "--batch_size", "4"]
PNG = b"\x89PNG\r\n\x1a\n"
METRICS = ("spearman", "knn_mae", "bin_ratio")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoints(echonet, tmp_path_factory):
    """(random init, trained): the tiny model as built with seed 0, and after stage 1 for epochs 0..3 (4 passes
    over the 10 training videos, batch 4, lr 1e-3, RnC temperature 1)."""
    root = tmp_path_factory.mktemp("visualize")
    train_first_stage.main(["--data_folder", str(echonet), *TINY, "--num_workers", "0", "--save_root",
                            str(root / "save"), "--run_name", "s1", "--batch_size", "4", "--epochs", "3",
                            "--learning_rate", "1e-3", "--temp", "1.0", "--trial", "0"])
    torch.manual_seed(0)  # the seed the training run built its model with (--trial 0)
    model = get_feature_extractor("uniformer_tiny")
    save_best(root / "untrained" / "init.pth", model, get_shallow_mlp_head(model.head.in_features, 1), 0, np.nan)
    return root / "untrained" / "init.pth", root / "save" / "s1" / "last.pth"


@pytest.fixture(scope="module")
def visualized(checkpoints, echonet, tmp_path_factory):
    """`visualize.py embeddings` of both checkpoints on all 16 videos (maps stubbed); (output folder, calls)."""
    out = tmp_path_factory.mktemp("embeddings") / "out"
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(projection, "project", fake_projection(calls))
        patch.setattr(projection, "umap_installed", lambda: True)  # the maps are stubbed: umap-learn is not needed
        visualize.main(["embeddings", "--data_folder", str(echonet), *EMBED, "--split", "all", "--output_dir",
                        str(out), "--pretrained_weights", *map(str, checkpoints), "--methods", "umap", "tsne"])
    return out, calls


def test_training_orders_the_embeddings_by_ef(visualized):
    out, _ = visualized
    untrained, trained = json.loads((out / "representation.json").read_text())["checkpoints"]
    for row in (untrained, trained):
        print(f"{row['label']:15s} " + "  ".join(f"{key} {row[key]:.3f}" for key in METRICS))
    # Measured over training seeds 0-5: trained Spearman 0.30-0.48 (random init -0.20-0.00), kNN MAE 8.0-10.8
    # (random 11.9-14.6), bin ratio 0.77-0.84 (random 1.00-1.02); the gaps were at least 0.37, 2.9 and 0.18.
    assert trained["spearman"] > 0.2 and trained["spearman"] >= untrained["spearman"] + 0.25
    assert trained["knn_mae"] <= untrained["knn_mae"] - 2.0
    assert trained["bin_ratio"] <= untrained["bin_ratio"] - 0.08


def test_embeddings_of_two_checkpoints(visualized, checkpoints, echonet):
    out, calls = visualized
    labels = ["untrained_init", "s1_last"]
    assert calls == ["umap", "tsne", "umap", "tsne"]  # a UMAP and a t-SNE map per checkpoint, in order
    assert (out / "embeddings.png").read_bytes()[:8] == PNG
    table = pd.read_csv(out / "representation.csv")
    assert list(table["label"]) == labels and list(table["n_videos"]) == [16, 16]
    assert set(visualize.CSV_COLUMNS) == set(table.columns)
    report = json.loads((out / "representation.json").read_text())["checkpoints"]

    dataset = EchoNetTest(echonet, "all", 8, 2, n_clips=3, seed=0)
    files = [load_embeddings(out / label / "embeddings.npz") for label in labels]
    for data, row, checkpoint in zip(files, report, checkpoints):
        assert data["names"] == dataset.vnames
        np.testing.assert_allclose(data["ef"], dataset.labels, rtol=1e-6)
        assert data["embeddings"].shape == (16, 128) and data["embeddings"].dtype == np.float32
        assert data["predictions"].shape == (16,) and np.isfinite(data["predictions"]).all()
        assert data["meta"] == {**data["meta"], "checkpoint": str(checkpoint), "split": "all", "frames": 8,
                                "frequency": 2, "clips": "three", "n_clips": 3, "format_version": 1}
        # the reported numbers are those of the saved embeddings
        numbers = representation_metrics(data["embeddings"], data["ef"])
        assert {key: row[key] for key in METRICS} == pytest.approx(numbers)
        assert row["embeddings_file"] == str(out / row["label"] / "embeddings.npz")
    assert np.abs(files[0]["embeddings"] - files[1]["embeddings"]).max() > 1e-3
    log = (out / "visualize.log").read_text()
    assert "s1_last: distance-EF Spearman" in log and "untrained_init: distance-EF Spearman" in log


def test_saved_embeddings_are_shown_without_any_forward_pass(visualized, tmp_path, monkeypatch):
    out, _ = visualized
    rng = np.random.default_rng(0)
    ef = rng.uniform(20, 80, 12)
    external = save_embeddings(tmp_path / "results" / "embeddings.npz", [f"{k:02d}.avi" for k in range(12)], ef,
                               np.stack([ef / 10, rng.normal(size=12), rng.normal(size=12)], axis=1), ef + 1.0,
                               {"checkpoint": "/runs/run_c/best.pth", "split": "test", "frames": 36,
                                "frequency": 4, "clips": "three"})

    def forbidden(*args, **kwargs):
        raise AssertionError("--embeddings must not build, load or run a model, nor read videos")

    for name in ("predict", "build_model", "read_weights", "load_weights",
                 "EchoNetTest", "EchoNetAllClips"):
        monkeypatch.setattr(visualize, name, forbidden)
    monkeypatch.setattr(models.UniFormer, "forward", forbidden)
    calls = []
    monkeypatch.setattr(projection, "project", fake_projection(calls))
    again = tmp_path / "again"
    rows = visualize.main(["embeddings", "--embeddings", external, str(out / "s1_last" / "embeddings.npz"),
                           "--output_dir", str(again), "--methods", "tsne"])

    assert [row["label"] for row in rows] == ["run_c_best", "s1_last"]  # labels from the checkpoints' paths
    assert calls == ["tsne", "tsne"] and (again / "embeddings.png").read_bytes()[:8] == PNG
    first = {row["label"]: row for row in json.loads((out / "representation.json").read_text())["checkpoints"]}
    assert {key: rows[1][key] for key in METRICS} == pytest.approx({key: first["s1_last"][key] for key in METRICS})
    assert rows[0]["spearman"] > 0.5  # EF is the first axis of those embeddings
    assert list(pd.read_csv(again / "representation.csv")["label"]) == ["run_c_best", "s1_last"]
    assert not list(again.glob("*/embeddings.npz"))  # nothing was recomputed, so nothing new is saved


def test_all_clips_mixed_with_a_saved_file(visualized, checkpoints, echonet, tmp_path, monkeypatch):
    out, _ = visualized
    monkeypatch.setattr(projection, "project", fake_projection([]))
    rows = visualize.main(["embeddings", "--data_folder", str(echonet), *EMBED, "--split", "test", "--clips", "all",
                           "--clip_stride", "40", "--embeddings", str(out / "s1_last" / "embeddings.npz"),
                           "--pretrained_weights", str(checkpoints[1]), "--output_dir", str(tmp_path / "mixed"),
                           "--methods", "tsne"])
    # rows follow the command line; the same label twice is made unique
    assert [row["label"] for row in rows] == ["s1_last", "s1_last_2"] and [r["n_videos"] for r in rows] == [16, 3]
    data = load_embeddings(tmp_path / "mixed" / "s1_last_2" / "embeddings.npz")
    assert data["meta"]["clips"] == "all" and data["meta"]["clip_stride"] == 40 and data["meta"]["split"] == "test"
    assert data["names"] == EchoNetTest(echonet, "test", 8, 2).vnames
    assert "different sets of videos" in (tmp_path / "mixed" / "visualize.log").read_text()


def test_cam_writes_video_and_strip_from_the_test_pipelines_clip(checkpoints, echonet, tmp_path, monkeypatch):
    trained = checkpoints[1]
    test_set = EchoNetTest(echonet, "test", 8, 2)
    avi = echonet / "Videos" / test_set.vnames[0]
    # a scanner-like MP4: the same video enlarged 2x on a bigger black screen (read by load_echo_video)
    frames = decode_video(avi)
    mp4 = str(tmp_path / "scanner.mp4")
    writer = cv2.VideoWriter(mp4, cv2.VideoWriter_fourcc(*"mp4v"), 50.0, (300, 260))
    assert writer.isOpened()
    for frame in frames:
        screen = np.zeros((260, 300, 3), np.uint8)
        screen[20:244, 40:264] = cv2.resize(frame, (224, 224), interpolation=cv2.INTER_NEAREST)
        writer.write(screen)
    writer.release()

    maps, real_grad_cam = [], visualize.grad_cam

    def spy(model, regressor, clip, **kwargs):
        heat, ef = real_grad_cam(model, regressor, clip, **kwargs)
        maps.append((clip.clone(), heat, ef))
        return heat, ef

    monkeypatch.setattr(visualize, "grad_cam", spy)
    out = tmp_path / "cam"
    short = tmp_path / "short.avi"  # 10 frames, zero-padded to 16: clips of 8 frames every 2nd start at 0 or 1
    writer = cv2.VideoWriter(str(short), cv2.VideoWriter_fourcc(*"MJPG"), 50.0, (112, 112))
    for frame in frames[:10]:
        writer.write(frame)
    writer.release()
    rows = visualize.main(["cam", "--pretrained_weights", str(trained), *MODEL, "--output_dir", str(out),
                           "--start", "4", str(short), str(avi), mp4])
    failed = rows.pop([row["file"] for row in rows].index(str(short)))  # reported; the others are still drawn
    assert failed["file"] == str(short) and "start 4 is out of range [0, 2)" in failed["error"]
    assert not list(out.glob("short*"))

    names = [os.path.basename(row["file"]) for row in rows]
    assert sorted(names) == sorted([avi.name, "scanner.mp4"]) and len(maps) == 2
    for row, (clip, heat, ef) in zip(rows, maps):
        stem = os.path.splitext(os.path.basename(row["file"]))[0]
        assert row["video"] == f"{stem}_cam.mp4" and row["png"] == f"{stem}_cam.png"
        read = read_all_frames(out / row["video"])
        assert len(read) == 8 and read[0].shape == (112, 2 * 112, 3)  # --frames frames: clip | overlay
        assert (out / row["png"]).read_bytes()[:8] == PNG
        assert heat.shape == (8, 112, 112) and np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
        assert clip.shape == (3, 8, 112, 112) and row["ef"] == pytest.approx(ef)

    # The EchoNet AVI is cut exactly as the test pipeline cuts it, and gets the EF the test scores for that clip.
    save_start_indexes({name: [4] for name in test_set.vnames}, tmp_path / "starts.json")
    at_4 = EchoNetTest(echonet, "test", 8, 2, tmp_path / "starts.json")
    model, regressor, _ = build_model("uniformer_tiny", trained)
    scored = predict(model, regressor, torch.utils.data.Subset(at_4, [0]), init_distributed("cpu"))
    clip, _, _ = maps[names.index(avi.name)]
    assert torch.equal(clip, at_4[0]["image"][0])
    assert rows[names.index(avi.name)]["ef"] == pytest.approx(scored["clip_predictions"][0, 0], abs=1e-3)
    # the MP4 went through load_echo_video (sector crop): its clip is close to, not equal to, the AVI's
    mp4_clip, _, _ = maps[names.index("scanner.mp4")]
    assert not torch.equal(mp4_clip, clip) and (mp4_clip - clip).abs().mean() < 0.3
    table = pd.read_csv(out / "cam.csv", keep_default_na=False).set_index("file")
    assert table.loc[str(short), "error"] == failed["error"] and table.loc[str(short), "start"] == ""
    drawn = table.drop(index=str(short))
    assert list(drawn["start"]) == ["4", "4"] and list(drawn["png"]) == [row["png"] for row in rows]
    assert list(drawn["error"]) == ["", ""]
    monkeypatch.setattr(sys, "argv", ["visualize.py", "cam", "--pretrained_weights", str(trained), *MODEL,
                                      "--output_dir", str(tmp_path / "cam_short"), "--start", "4", str(short)])
    with pytest.raises(SystemExit) as exit_:
        visualize.cli()
    assert exit_.value.code == 1
    assert "predicted EF" in (out / "visualize.log").read_text()


def test_missing_checkpoint_is_one_line_naming_it(checkpoints, echonet, tmp_path, capsys):
    missing = tmp_path / "run_x" / "best.pth"
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: visualize.main(["embeddings", "--data_folder", str(echonet), *EMBED, "--output_dir",
                                         str(out), "--pretrained_weights", str(checkpoints[1]), str(missing)]))
    error = capsys.readouterr().err
    assert exit_.value.code == 1 and error.startswith("error: ") and error.count("\n") == 1 and str(missing) in error
    assert not out.exists()  # checked before anything is computed or written

    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: visualize.main(["cam", "--pretrained_weights", str(missing), *MODEL, "--output_dir",
                                         str(out), str(echonet / "Videos" / "0XSYN0000000000.avi")]))
    error = capsys.readouterr().err
    assert exit_.value.code == 1 and error.startswith("error: ") and error.count("\n") == 1 and str(missing) in error
    assert not out.exists()


def test_umap_asked_without_umap_learn(visualized, tmp_path, monkeypatch):
    out, _ = visualized
    monkeypatch.setitem(sys.modules, "umap", None)  # `import umap` now fails as if it were not installed
    npz = str(out / "s1_last" / "embeddings.npz")
    with pytest.raises(BadInputError, match="--methods umap needs umap-learn.*pip install umap-learn"):
        visualize.main(["embeddings", "--embeddings", npz, "--output_dir", str(tmp_path / "a"), "--methods", "umap"])
    assert not (tmp_path / "a").exists()
    calls = []
    monkeypatch.setattr(projection, "project", fake_projection(calls))
    visualize.main(["embeddings", "--embeddings", npz, "--output_dir", str(tmp_path / "b")])
    assert calls == ["tsne"]  # not asked for: the default falls back to t-SNE alone


def test_parser_needs_a_source_and_keeps_starts_apart_from_inputs(capsys):
    with pytest.raises(SystemExit) as exit_:
        visualize.parse_option(["embeddings", "--output_dir", "x"])
    assert exit_.value.code == 2 and "--pretrained_weights" in capsys.readouterr().err
    opt = visualize.parse_option(["cam", "--pretrained_weights", "w.pth", "--output_dir", "o", "--starts", "0,40",
                                  "a.avi", "b.mp4"])
    assert opt.starts == [0, 40] and opt.inputs == ["a.avi", "b.mp4"]
    assert (opt.model, opt.frames, opt.frequency) == (None, None, None)  # filled from the checkpoint (models.settings)


# ---------------------------------------------------------------- embeddings.npz


@pytest.mark.slow  # real UMAP: ~12 s of numba compilation
def test_real_umap_and_tsne_maps(visualized, tmp_path):
    import umap  # noqa: F401  (requirements.txt installs it: a broken install fails, not skips)
    out, _ = visualized
    visualize.main(["embeddings", "--embeddings", str(out / "s1_last" / "embeddings.npz"), "--output_dir",
                    str(tmp_path), "--methods", "umap", "tsne"])
    assert (tmp_path / "embeddings.png").read_bytes()[:8] == PNG
