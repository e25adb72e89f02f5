"""utils/pictures/cam.py: the Grad-CAM overlay, its video (MP4, else AVI, else GIF) and PNG strip written and read
back."""
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import utils.pictures.cam as cam_module
from conftest import read_all_frames
from datasets.clips import denormalise, normalise
from utils.pictures.cam import overlay, save_cam_strip, write_cam_video


def test_overlay_colours_the_map_and_leaves_the_rest():
    frames = np.full((2, 4, 4, 3), 100, np.uint8)
    heat = np.zeros((2, 4, 4), np.float32)
    heat[1, 0, 0] = 1.0
    blended = overlay(frames, heat, alpha=0.5)
    # JET at 1 is dark red (RGB 128, 0, 0): half of it over grey 100
    np.testing.assert_array_equal(blended[1, 0, 0], [114, 50, 50])
    cold = heat == 0
    assert cold.sum() == 31
    np.testing.assert_array_equal(blended[cold], frames[cold])  # where the map is 0 the frame is unchanged
    with pytest.raises(ValueError, match="differ in size"):
        overlay(frames, heat[:, :2])


def _clip_and_cam(frames=8):
    # grey, smooth frames (as echo videos are) that change from frame to frame; lossy codecs keep them close
    ramp = np.add.outer(np.arange(frames) * 8, np.add.outer(np.arange(112), np.arange(112))) % 256
    uint8 = np.repeat(ramp[None].astype(np.uint8), 3, axis=0)
    cam = np.zeros((frames, 112, 112), np.float32)
    cam[:, 20:60, 30:70] = 1.0
    return torch.from_numpy(normalise(uint8)), cam


def test_video_is_written_and_read_back(tmp_path):
    clip, cam = _clip_and_cam()
    path = write_cam_video(tmp_path / "cam.mp4", denormalise(clip), cam)
    assert path == str(tmp_path / "cam.mp4")
    frames = read_all_frames(path)
    assert len(frames) == 8 and frames[0].shape == (112, 2 * 112, 3)  # clip | overlay
    # BGR as read: the map's hot box (rows 20-60, columns 30-70) is red, the rest of the overlay grey
    hot, cold = frames[0][30:50, 112 + 40:112 + 60].mean(axis=(0, 1)), frames[0][80:100, 112 + 80:].mean(axis=(0, 1))
    assert hot[2] > hot[0] + 20 and abs(cold[2] - cold[0]) < 5
    assert [p.name for p in tmp_path.iterdir()] == ["cam.mp4"]  # no temp file left


def test_video_falls_back_to_avi_then_gif(tmp_path, monkeypatch):
    clip, cam = _clip_and_cam(frames=6)
    monkeypatch.setattr(cam_module, "VIDEO_FORMATS", (("ZZZZ", ".mp4"), ("MJPG", ".avi")))  # no such codec
    path = write_cam_video(tmp_path / "cam.mp4", denormalise(clip), cam)
    assert path == str(tmp_path / "cam.avi")
    frames = read_all_frames(path)
    assert len(frames) == 6 and frames[0].shape == (112, 224, 3)
    # the left half is the clip itself (MJPG is lossy: close, not equal)
    original = cv2.cvtColor(denormalise(clip)[0], cv2.COLOR_RGB2BGR)
    assert np.abs(frames[0][:, :112].astype(int) - original).mean() < 8

    monkeypatch.setattr(cam_module, "VIDEO_FORMATS", ())
    path = write_cam_video(tmp_path / "cam.mp4", denormalise(clip), cam)
    assert path == str(tmp_path / "cam.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 6 and gif.size == (224, 112)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.avi", "cam.gif"]


def test_png_strip(tmp_path):
    clip, cam = _clip_and_cam(frames=36)
    path = save_cam_strip(tmp_path / "strip.png", denormalise(clip), cam, title="predicted EF 55.0 %")
    data = (tmp_path / "strip.png").read_bytes()
    assert path == tmp_path / "strip.png" and data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        width, height = image.size
    assert width > 3 * height  # eight frames in a row, two rows


def test_strip_figure_picks_evenly_spaced_frames(monkeypatch):
    clip, cam = _clip_and_cam(frames=36)
    figures = []
    monkeypatch.setattr(cam_module, "save_figure", lambda fig, path: figures.append(fig))
    save_cam_strip("unused.png", denormalise(clip), cam)
    fig, = figures
    assert len(fig.axes) == 16
    assert [ax.get_title() for ax in fig.axes[:8]] == [f"frame {i}" for i in (0, 5, 10, 15, 20, 25, 30, 35)]
