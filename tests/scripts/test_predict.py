"""predict.py (EF of any echo video) and the clip grid it shares with `test_with_three_clips.py --clips all`.

One tiny UniFormer checkpoint (random weights, the regressor's output layer scaled up so that clips of
different content get EFs several points apart: a match to 1e-4 then means the same input tensors) is
scored on: EchoNet sample videos against the test pipeline, the nine real ones (skipped without ../shared) and
generated ones in their layout (conftest's generated_samples, run everywhere); DICOMs written with pydicom
(MONOCHROME2 and RGB from a real and from a generated sample, YBR_FULL_422); a 640x480 30 fps MP4 screen
recording with text and a black border; a folder with broken files, run once as a subprocess with
hf:// weights from a pre-filled hub cache and HF_HUB_OFFLINE=1.
"""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import predict
import test_with_three_clips
from conftest import (REPO_ROOT, SAMPLE_SOURCES, SAMPLE_VIDEOS, fill_hub_cache, intersection, write_dicom,
                      write_screen_recording, write_tiny_checkpoint)
from datasets.clips import NORMALISED, clip_grid, cut_clips, default_clip_stride, normalise
from datasets.echonet import EchoNetAllClips
from datasets.video import decode_video, frame_count
from utils.script.errors import BadInputError, MissingInputError

FRAMES, FREQUENCY, STRIDE = 8, 8, 100  # span 57 frames: the samples (91-223 frames) get 2-3 grid clips
TINY = ["--model", "uniformer_tiny", "--frames", str(FRAMES), "--frequency", str(FREQUENCY), "--device", "cpu"]
HF_SPEC = "hf://someone/coreecho-tiny/runs/best.pth"
# the released zero-padding and no length floor: the files below test the readers on loops of a few frames
READERS = ["--short_loops", "pad", "--min_frames", "2", "--min_seconds", "0"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("weights") / "best.pth")


def read_outputs(out):
    table = pd.read_csv(out, keep_default_na=False, na_values=[""])
    clips = pd.read_csv(str(out)[:-len(".csv")] + ".clips.csv")
    return table, clips


def row_of(table, name):
    rows = table[table["file"].map(os.path.basename) == name]
    assert len(rows) == 1, (name, list(table["file"]))
    return rows.iloc[0]


# ---------------------------------------------------------------- the grid

def test_clip_grid_covers_the_whole_video():
    assert default_clip_stride(8, 4) == 16 and default_clip_stride(36, 4) == 72 and default_clip_stride(1, 1) == 1
    # 100 frames, span 29: valid starts 0..71; the grid misses 71, which is added
    assert clip_grid(100, 8, 4, 16).tolist() == [0, 16, 32, 48, 64, 71]
    assert clip_grid(93, 8, 4, 16).tolist() == [0, 16, 32, 48, 64]  # the grid hits the last start: no repeat
    assert clip_grid(100, 8, 4).tolist() == clip_grid(100, 8, 4, 16).tolist()  # default stride
    assert clip_grid(30, 8, 4, 1).tolist() == [0, 1, 2, 3]
    assert clip_grid(175, 36, 4).tolist() == [0, 34]  # paper clips: 175 frames, span 141 -> last start 34
    # shorter than frames * frequency (32): padded to 32 like the datasets, valid starts 0..3
    assert clip_grid(20, 8, 4, 16).tolist() == [0, 3] and clip_grid(2, 8, 4, 2).tolist() == [0, 2, 3]
    assert clip_grid(100, 8, 4, 16).dtype == np.int64
    for bad in ((0, 8, 4, 16), (100, 8, 4, 0), (100, 0, 4, 16), (100, 8, 4, 2.5)):
        with pytest.raises(ValueError):
            clip_grid(*bad)


def test_cut_clips_pads_with_black_and_normalises_like_the_datasets():
    video = np.random.default_rng(0).integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    clips = cut_clips(video, [0, 1], 4, 2)  # frames 0 2 4 6 and 1 3 5 7: 6, 5 and 7 are past the end
    assert clips.shape == (2, 3, 4, 6, 7) and clips.dtype == torch.float32
    expected = normalise(np.concatenate([video[[1, 3]], np.zeros((2, 6, 7, 3), np.uint8)]).transpose(3, 0, 1, 2))
    assert torch.equal(clips[1], torch.from_numpy(expected))
    assert torch.equal(clips[0, :, :3], torch.from_numpy(normalise(video[[0, 2, 4]].transpose(3, 0, 1, 2))))
    black = torch.from_numpy(NORMALISED[:, 0])[:, None, None, None]
    assert torch.equal(clips[0, :, 3:], black.expand(3, 1, 6, 7))


# ---------------------------------------------------------------- EchoNet samples: predict.py == test pipeline

@pytest.fixture(scope="module")
def sample_runs(checkpoint, samples, tmp_path_factory):
    """predict.py on the sample videos (real or generated: conftest's `samples`; --target_fps 0, 2 workers) and the
    test script with --clips all, its fixed-clip pass reading the last grid start of every video."""
    root = tmp_path_factory.mktemp("samples")
    videos = sorted((samples / "Videos").glob("*.avi"))
    grids = {video.name: clip_grid(frame_count(video), FRAMES, FREQUENCY, STRIDE) for video in videos}
    (root / "starts.json").write_text(json.dumps({name: [int(grid[-1])] for name, grid in grids.items()}))
    test_with_three_clips.main(["--data_folder", str(samples), "--pretrained_weights", str(checkpoint), *TINY,
                                "--num_workers", "0", "--path_test_start_indexes", str(root / "starts.json"),
                                "--path_save_test_files", str(root / "test" / "test.pkl"), "--clips", "all",
                                "--clip_stride", str(STRIDE)])
    status = predict.main(["--pretrained_weights", str(checkpoint), *TINY, "--target_fps", "0", "--clip_stride",
                           str(STRIDE), "--num_workers", "2", "--output", str(root / "ef.csv"),
                           str(samples / "Videos")])
    return {"root": root, "status": status, "grids": grids, "samples": samples}


def test_predict_gives_the_test_pipelines_clip_ef_on_echonet_samples(sample_runs):
    root, grids, samples = sample_runs["root"], sample_runs["grids"], sample_runs["samples"]
    assert len(grids) >= 6
    assert sample_runs["status"] == 0
    table, clips = read_outputs(root / "ef.csv")
    assert list(table.columns) == predict.CSV_COLUMNS and list(clips.columns) == ["file", "clip_start", "ef"]
    assert sorted(table["file"].map(os.path.basename)) == sorted(grids)
    pipeline = pd.read_csv(root / "test" / "predictions_all_clips.csv")  # EchoNetAllClips + utils.evaluation.inference
    clips["video"] = clips["file"].map(os.path.basename)
    merged = clips.merge(pipeline, on=["video", "clip_start"], how="outer", validate="one_to_one")
    assert len(merged) == len(clips) == len(pipeline) == sum(map(len, grids.values()))
    np.testing.assert_allclose(merged["ef"], merged["pred"], atol=1e-4)
    assert merged["ef"].max() - merged["ef"].min() > 5  # so the 1e-4 match is not a constant model's
    for name, grid in grids.items():
        assert clips.loc[clips["video"] == name, "clip_start"].tolist() == grid.tolist()
        assert grid[-1] == frame_count(samples / "Videos" / name) - (FRAMES - 1) * FREQUENCY - 1
        row = row_of(table, name)
        ef = clips.loc[clips["video"] == name, "ef"].to_numpy()
        assert row["ef"] == pytest.approx(ef.mean(), abs=1e-4) and row["ef_std"] == pytest.approx(ef.std(), abs=1e-4)
        assert (row["n_clips"], row["fps"], row["fps_used"]) == (len(grid), 50, 50)
        assert pd.isna(row["crop"]) and pd.isna(row["error"]) and "temporal resampling disabled" in row["notes"]
    assert EchoNetAllClips(samples, "test", FRAMES, FREQUENCY, STRIDE).clip_counts.tolist() == \
        [len(grids[name]) for name in sorted(grids)]

    # the fixed-clip pass (utils.evaluation.inference.predict on EchoNetTest, unchanged) at the last start
    fixed = pd.read_csv(root / "test" / "predictions.csv")
    for _, row in fixed.iterrows():
        scored = clips[clips["video"] == row["video"]].set_index("clip_start")["ef"]
        assert row["start_0"] == grids[row["video"]][-1]
        assert row["pred_clip_0"] == pytest.approx(scored[row["start_0"]], abs=1e-4)


def test_clips_all_of_the_test_script_is_the_mean_of_its_clips(sample_runs):
    out = sample_runs["root"] / "test"
    three, per_clip = pd.read_csv(out / "predictions.csv"), pd.read_csv(out / "predictions_all_clips.csv")
    assert list(three.columns) == ["video", "EF", "start_0", "pred_clip_0", "pred_mean", "n_clips_all",
                                   "pred_all_clips"]
    grouped = per_clip.groupby("video", sort=False)["pred"]
    np.testing.assert_allclose(three["pred_all_clips"], grouped.mean()[three["video"]], atol=2e-4)
    assert three["n_clips_all"].tolist() == grouped.size()[three["video"]].tolist()
    assert three["n_clips_all"].tolist() == [len(sample_runs["grids"][v]) for v in three["video"]]
    saved = json.loads((out / "metrics.json").read_text())
    errors = three["pred_all_clips"].to_numpy() - three["EF"].to_numpy()  # the metrics from their definitions
    spread = ((three["EF"] - three["EF"].mean()) ** 2).sum()
    recomputed = {"mae": np.abs(errors).mean(), "rmse": np.sqrt((errors ** 2).mean()),
                  "r2": 1 - (errors ** 2).sum() / spread}
    assert saved["all_clips"]["n_clips_total"] == len(per_clip) and saved["all_clips"]["clip_stride"] == STRIDE
    for key in ("mae", "rmse", "r2"):
        assert saved["all_clips"]["metrics"][key] == pytest.approx(recomputed[key], abs=1e-3)
    assert saved["n_clips"] == 1 and "Mean of ALL clips" in (out / "test.log").read_text()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_gpu_batches_give_the_cpu_clip_ef(sample_runs, checkpoint):
    """On a GPU the clips of several videos share a forward (--batch_size 3 splits and joins videos)."""
    _, on_cpu = read_outputs(sample_runs["root"] / "ef.csv")
    for amp, tolerance in (("none", 0.1), ("bf16", None)):  # fp32 convolutions may use TF32 on the GPU
        out = sample_runs["root"] / f"gpu_{amp}" / "ef.csv"
        assert predict.main(["--pretrained_weights", str(checkpoint), *TINY[:-2], "--device", "cuda", "--amp", amp,
                             "--target_fps", "0", "--clip_stride", str(STRIDE), "--batch_size", "3",
                             "--num_workers", "2", "--output", str(out), str(sample_runs["samples"] / "Videos")]) == 0
        _, on_gpu = read_outputs(out)
        assert on_gpu[["file", "clip_start"]].equals(on_cpu[["file", "clip_start"]])
        assert np.isfinite(on_gpu["ef"]).all()
        if tolerance:
            np.testing.assert_allclose(on_gpu["ef"], on_cpu["ef"], atol=tolerance)


# ---------------------------------------------------------------- other formats, one run

def ybr_full_422(frames):
    """Grey frames [F, H, W] (W even) stored as YBR_FULL_422: per pixel pair Y1 Y2 Cb Cr, no colour."""
    chroma = np.full((*frames.shape[:2], frames.shape[2] // 2), 128, np.uint8)
    return np.stack([frames[..., 0::2], frames[..., 1::2], chroma, chroma], axis=-1).tobytes()


# per source of EchoNet samples: the AVI, its grey DICOM and an RGB DICOM made from it, in mixed_run's folder
SAMPLE_FILES = {"real": ("sample.avi", "sample.dcm", "rgb.dcm"),
                "generated": ("generated.avi", "generated.dcm", "generated_rgb.dcm")}


@pytest.fixture(scope="module")
def mixed_run(checkpoint, generated_samples, tmp_path_factory):
    """One predict.py run over a folder of EchoNet AVIs (a real sample where ../shared has them, a generated one
    always), each with its DICOM and an RGB DICOM, a YBR_FULL_422 DICOM and a 640x480 MP4 screen recording."""
    folder = tmp_path_factory.mktemp("mixed")
    videos = folder / "videos"
    videos.mkdir()
    sources = {"generated": sorted((generated_samples / "Videos").glob("*.avi"))[0]}
    if SAMPLE_VIDEOS:
        sources["real"] = SAMPLE_VIDEOS[0]
    for source, original in sources.items():
        avi_name, dicom_name, rgb_name = SAMPLE_FILES[source]
        avi = shutil.copy(original, videos / avi_name)
        frames = decode_video(avi)
        write_dicom(videos / dicom_name, frames[..., 1], FrameTime=20)  # grey, MONOCHROME2, 50 fps
        crop = frames[:10, 16:96, :, 1]  # 10 frames of 80x112 -> 2x: 160x224 RGB at 25 fps
        big = np.repeat(np.repeat(crop, 2, axis=1), 2, axis=2)
        write_dicom(videos / rgb_name, np.repeat(big[..., None], 3, axis=-1), "RGB", CineRate=25)
    grey = np.random.default_rng(1).integers(0, 256, (4, 112, 112), dtype=np.uint8)
    write_dicom(videos / "ybr.dcm", np.zeros((4, 112, 112, 3), np.uint8), "YBR_FULL_422",
                pixel_bytes=ybr_full_422(grey), RecommendedDisplayFrameRate=50)
    screen, boxes = write_screen_recording(videos)
    status = predict.main(["--pretrained_weights", str(checkpoint), *TINY, *READERS, "--num_workers", "0",
                           "--clip_stride", str(STRIDE), "--output", str(folder / "out" / "ef.csv"), str(videos)])
    table, clips = read_outputs(folder / "out" / "ef.csv")
    return {"status": status, "table": table, "clips": clips, "boxes": boxes, "screen": screen.name,
            "log": (folder / "out" / "ef.log").read_text(), "sources": sources}


@pytest.mark.parametrize("source", SAMPLE_SOURCES)
def test_dicom_of_a_sample_scores_like_its_avi(mixed_run, source):
    avi_name, dicom_name, _ = SAMPLE_FILES[source]
    avi, dicom = row_of(mixed_run["table"], avi_name), row_of(mixed_run["table"], dicom_name)
    assert abs(dicom["ef"] - avi["ef"]) <= 0.5  # grey channel vs. the AVI's RGB: within 2 grey levels
    for key in ("n_clips", "n_frames", "fps", "fps_used"):
        assert dicom[key] == avi[key], key
    assert avi["n_frames"] == len(decode_video(mixed_run["sources"][source])) and avi["fps"] == 50
    assert pd.isna(dicom["crop"]) and "frame rate from DICOM FrameTime" in dicom["notes"]
    assert dicom["crop_source"] == avi["crop_source"] == "none"  # 112x112: used as it is


@pytest.mark.parametrize("source", SAMPLE_SOURCES)
def test_rgb_dicom_is_read_and_resampled(mixed_run, source):
    row = row_of(mixed_run["table"], SAMPLE_FILES[source][2])
    assert pd.isna(row["error"]) and np.isfinite(row["ef"])
    assert (row["fps"], row["fps_used"], row["n_frames"], row["n_clips"]) == (25, 50, 20, 2)
    assert "resampled 25 -> 50 fps" in row["notes"] and "shorter than one clip" in row["notes"]


def test_ybr_full_422_dicom_is_read(mixed_run):
    row = row_of(mixed_run["table"], "ybr.dcm")
    assert pd.isna(row["error"]) and np.isfinite(row["ef"]) and pd.isna(row["crop"])
    # 4 frames: zero-padded to 64 like the datasets, valid starts 0..7 -> grid [0, 7]
    assert (row["n_frames"], row["n_clips"]) == (4, 2) and "zero-padded at the end to 64 frames" in row["notes"]
    clips = mixed_run["clips"]
    assert clips.loc[clips["file"].str.endswith("ybr.dcm"), "clip_start"].tolist() == [0, 7]


def test_screen_recording_is_cropped_to_its_sector_and_scored(mixed_run):
    row, boxes = row_of(mixed_run["table"], mixed_run["screen"]), mixed_run["boxes"]
    assert mixed_run["status"] == 0 and pd.isna(row["error"]) and np.isfinite(row["ef"])
    box = tuple(int(v) for v in row["crop"].split(","))
    assert row["crop_source"] == "auto"
    assert intersection(box, boxes["text"]) == 0  # the burnt-in text is outside the crop
    sector = boxes["sector"]
    assert intersection(box, sector) >= 0.97 * sector[2] * sector[3]
    assert (row["fps"], row["fps_used"], row["n_frames"]) == (30, 50, 50)
    assert f"{mixed_run['screen']}: 30 fps found, 50 fps used; crop {row['crop']}" in mixed_run["log"]


# ---------------------------------------------------------------- failures, as a subprocess, hf:// weights

@pytest.fixture(scope="module")
def broken_folder_run(checkpoint, tmp_path_factory):
    """`python predict.py --plot` on a folder with one good DICOM, a single-frame DICOM (skipped), a corrupt AVI
    and an AVI without frames (failed); the weights come as hf://... from a pre-filled hub cache, offline."""
    root = tmp_path_factory.mktemp("broken")
    folder = root / "videos"
    folder.mkdir()
    grey = np.random.default_rng(1).integers(0, 256, (4, 112, 112), dtype=np.uint8)
    write_dicom(folder / "ybr.dcm", np.zeros((4, 112, 112, 3), np.uint8), "YBR_FULL_422",
                pixel_bytes=ybr_full_422(grey), RecommendedDisplayFrameRate=50)  # the same file as in mixed_run
    (folder / "corrupt.avi").write_bytes(np.random.default_rng(0).bytes(4000))
    write_dicom(folder / "single.dcm", grey[:1])
    cv2.VideoWriter(str(folder / "empty.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48)).release()
    hub = root / "hub"
    fill_hub_cache(hub, "someone/coreecho-tiny", "runs/best.pth", checkpoint.read_bytes())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "predict.py", "--pretrained_weights", HF_SPEC, *TINY, *READERS,
                             "--num_workers", "0", "--clip_stride", str(STRIDE), "--output", str(root / "ef.csv"),
                             "--plot", str(root / "plots"), str(folder)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    return {"result": result, "outputs": read_outputs(root / "ef.csv") if (root / "ef.csv").exists() else None,
            "plots": root / "plots"}


def test_bad_files_do_not_stop_the_run_and_exit_1(broken_folder_run):
    result = broken_folder_run["result"]
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    table, clips = broken_folder_run["outputs"]
    assert sorted(table["file"].map(os.path.basename)) == ["corrupt.avi", "empty.avi", "single.dcm", "ybr.dcm"]
    for name, words in (("corrupt.avi", "cannot be opened as a video"), ("empty.avi", "has no frames")):
        row = row_of(table, name)
        assert words in row["error"] and name in row["error"] and pd.isna(row["ef"]) and row["n_clips"] == 0
        assert f"{name}: FAILED: " in result.stdout and row["status"] == "failed"
    # one image is no loop: skipped with its reason, not a failure
    row = row_of(table, "single.dcm")
    assert "single frame: not a cine loop" in row["error"] and pd.isna(row["ef"]) and row["n_clips"] == 0
    assert row["status"] == "skipped" and "single.dcm: skipped: single frame" in result.stdout
    assert pd.isna(row_of(table, "ybr.dcm")["error"]) and row_of(table, "ybr.dcm")["status"] == "scored"
    assert set(clips["file"].map(os.path.basename)) == {"ybr.dcm"}
    assert "4 files: 1 scored (2 clips), 1 skipped, 2 failed" in result.stdout
    figures = list(broken_folder_run["plots"].iterdir())  # --plot: a figure for the scored video only
    assert [f.name for f in figures] == ["ybr.dcm.png"] and figures[0].read_bytes()[:4] == b"\x89PNG"


def test_hf_weights_resolve_offline_from_the_hub_cache(broken_folder_run, mixed_run):
    result = broken_folder_run["result"]
    assert f"Checkpoint {HF_SPEC} (" in result.stdout and "snapshots" in result.stdout
    table, _ = broken_folder_run["outputs"]
    # the same checkpoint as the in-process run: the same EF for the same file
    assert row_of(table, "ybr.dcm")["ef"] == pytest.approx(row_of(mixed_run["table"], "ybr.dcm")["ef"], abs=1e-4)


def test_bad_arguments_fail_before_anything_is_written(checkpoint, tmp_path):
    args = ["--pretrained_weights", str(checkpoint), *TINY, "--output", str(tmp_path / "ef.csv")]
    with pytest.raises(MissingInputError, match="input .*absent.avi does not exist"):
        predict.main([*args, str(tmp_path / "absent.avi")])
    video = write_dicom(tmp_path / "a.dcm", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(BadInputError, match="crop must be 'auto', 'none' or x,y,w,h"):
        predict.main([*args, "--crop", "sector", str(video)])
    with pytest.raises(MissingInputError, match="weights file .*nothing.pth does not exist"):
        predict.main([*args[2:], "--pretrained_weights", str(tmp_path / "nothing.pth"), str(video)])
    (tmp_path / "results").mkdir()
    with pytest.raises(BadInputError, match=r"--output \S*results is a folder; give the CSV file"):
        predict.main([*args[:-2], "--output", str(tmp_path / "results"), str(video)])
    assert not (tmp_path / "ef.csv").exists() and not list((tmp_path / "results").iterdir())
    assert not (tmp_path / "results.log").exists()
