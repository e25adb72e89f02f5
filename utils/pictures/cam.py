"""Grad-CAM overlays of one clip, as a video (clip beside overlay) and as a PNG strip of frames. The map
itself is computed by utils/evaluation/grad_cam.py (`grad_cam`); nothing here computes it.
"""
import io
import os
import tempfile

import cv2
import numpy as np

from utils.files.atomic import atomic_open
from utils.pictures.plots import cam_strip_figure, save_figure

# Tried in order; the first that this OpenCV build can open is used, else an animated GIF (Pillow).
VIDEO_FORMATS = (("mp4v", ".mp4"), ("MJPG", ".avi"))
BROWSER_FORMATS = (("VP80", ".webm"),)  # what a web page's <video> plays (the web page, app.py)
CLIP_FPS = 12.5  # EchoNet is filmed at 50 frames/s and clips take every 4th frame


def overlay(frames, cam, alpha=0.5, colormap=cv2.COLORMAP_JET):
    """RGB frames [T, H, W, 3] uint8 with the map [T, H, W] in [0, 1] coloured in. Each pixel blends
    in the colour with weight `alpha` x map, so the echo shows unchanged where the map is 0."""
    frames = np.asarray(frames, dtype=np.uint8)
    cam = np.clip(np.asarray(cam, dtype=np.float32), 0, 1)
    if frames.shape[:3] != cam.shape:
        raise ValueError(f"frames {frames.shape} and map {cam.shape} differ in size")
    levels = np.rint(cam * 255).astype(np.uint8)
    heat = np.stack([cv2.cvtColor(cv2.applyColorMap(level, colormap), cv2.COLOR_BGR2RGB) for level in levels])
    weight = alpha * cam[..., None]
    return np.rint((1 - weight) * frames + weight * heat).astype(np.uint8)


def write_cam_video(path, frames, cam, fps=CLIP_FPS, alpha=0.5, formats=None):
    """Write the clip's RGB frames [T, H, W, 3] uint8 (datasets.clips.denormalise of a clip) (left) beside
    the clip with the map overlaid (right).

    MP4 (mp4v) when this OpenCV build can encode it, else MJPG AVI, else an animated GIF: the extension
    of `path` is replaced by the one written. Returns the path written (atomically, via atomic_open).
    `formats`: the (fourcc, extension) pairs to try first (default VIDEO_FORMATS; BROWSER_FORMATS: WebM, which
    browsers play).
    """
    side_by_side = np.concatenate([frames, overlay(frames, cam, alpha)], axis=2)
    stem = os.path.splitext(os.fspath(path))[0]
    for fourcc, extension in formats or VIDEO_FORMATS:  # read at call time (tests change VIDEO_FORMATS)
        data = _encode_with_opencv(side_by_side, fourcc, extension, fps)
        if data:
            break
    else:
        data, extension = _encode_gif(side_by_side, fps), ".gif"
    with atomic_open(stem + extension, "wb") as f:
        f.write(data)
    return stem + extension


def _encode_with_opencv(frames, fourcc, extension, fps):
    """The encoded file's bytes, or None when this build cannot encode `fourcc`. OpenCV writes only to a
    path and picks the container by its extension, so it writes into a scratch folder first."""
    height, width = frames.shape[1:3]
    with tempfile.TemporaryDirectory() as folder:
        scratch = os.path.join(folder, "video" + extension)
        writer = cv2.VideoWriter(scratch, cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height))
        if not writer.isOpened():
            return None
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        if not os.path.exists(scratch):
            return None
        with open(scratch, "rb") as f:
            return f.read() or None  # some builds open a writer and then encode nothing


def _encode_gif(frames, fps):
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0)
    return buffer.getvalue()


def save_cam_strip(path, frames, cam, n_frames=8, alpha=0.5, title=None):
    """PNG of `n_frames` evenly spaced frames of RGB frames [T, H, W, 3] uint8: the clip on the top row, the
    overlay below."""
    indexes = np.unique(np.linspace(0, len(frames) - 1, min(n_frames, len(frames))).round().astype(int))
    save_figure(cam_strip_figure(frames[indexes], overlay(frames[indexes], cam[indexes], alpha), indexes, title),
                path)
    return path
