"""Generated echo-like loops to measure the colour-flow rule on (datasets/sources/colour_flow.py): a greyscale
sector of speckle that beats, in RGB, and what a real export adds to it: an ECG strip and coloured text below
or beside the sector, a colour Doppler box (red / blue velocities) or a power Doppler box (orange) inside it,
a grey map tinted sepia. Codec noise and GIF dithering are added by writing the loop out (the benchmark).
"""
from __future__ import annotations

import cv2
import numpy as np

HEIGHT, WIDTH = 300, 400
APEX, RADIUS, HALF_ANGLE = (200, 20), 260, 40  # the fan: apex at the top centre, opening downwards


def sector(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    dx, dy = xs - APEX[0], ys - APEX[1]
    return (np.hypot(dx, dy) <= RADIUS) & (np.abs(np.degrees(np.arctan2(dx, dy))) <= HALF_ANGLE) & (dy >= 0)


def sector_box(height: int = HEIGHT, width: int = WIDTH) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(sector(height, width))
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def grey_loop(rng: np.random.Generator, n_frames: int = 24) -> np.ndarray:
    """uint8 RGB [n, HEIGHT, WIDTH, 3], R = G = B: speckle in the fan, a dark cavity that shrinks and grows."""
    fan = sector()
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = np.zeros((n_frames, HEIGHT, WIDTH), np.uint8)
    for t in range(n_frames):
        radius = 50 + 15 * np.cos(2 * np.pi * t / 12)
        cavity = np.hypot(xs - 200, (ys - 150) / 1.6) < radius
        speckle = rng.gamma(2.0, 40.0, (HEIGHT, WIDTH)) * np.where(cavity, 0.15, 1.0)
        frames[t] = np.clip(speckle, 0, 255) * fan
    return np.repeat(frames[..., None], 3, axis=-1)


def add_ecg(frames: np.ndarray) -> np.ndarray:
    """A green ECG trace across the bottom rows (as vendors draw it, overlapping the fan's bounding box)."""
    xs = np.arange(WIDTH)
    ys = (HEIGHT - 25 - 15 * np.exp(-((xs % 100) - 50) ** 2 / 8.0)).astype(np.int32)
    for frame in frames:
        cv2.polylines(frame, [np.stack([xs, ys], 1)], False, (40, 220, 90), 2)
    return frames


def add_text(frames: np.ndarray) -> np.ndarray:
    """Yellow labels and a depth scale at the left of the fan."""
    for frame in frames:
        cv2.putText(frame, "4C 17Hz", (5, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (230, 220, 40), 1)
        for y in range(40, 280, 40):
            cv2.line(frame, (70, y), (78, y), (230, 220, 40), 1)
    return frames


def add_flow(frames: np.ndarray, rng: np.random.Generator, share: float, power: bool = False) -> np.ndarray:
    """A colour box over `share` of the fan's bounding box, its flow in blobs (red towards, blue away from the
    probe; orange for power Doppler) over ~40 % of the box, moving from frame to frame."""
    x, y, w, h = sector_box()
    side_w, side_h = int(w * np.sqrt(share) * 1.2), int(h * np.sqrt(share) / 1.2)
    left, top = x + (w - side_w) // 2, y + (h - side_h) // 2
    for frame in frames:
        noise = cv2.GaussianBlur(rng.standard_normal((side_h, side_w)), (0, 0), 4)
        noise /= noise.std() + 1e-9
        flow = np.abs(noise) > 0.85  # ~40 % of a standard normal lies beyond +-0.85
        speed = np.clip(np.abs(noise) * 90, 60, 255).astype(np.uint8)
        box = frame[top:top + side_h, left:left + side_w]
        if power:
            colour = np.stack([speed, (speed * 0.6).astype(np.uint8), np.zeros_like(speed)], -1)
        else:
            red = np.stack([speed, speed // 5, speed // 8], -1)
            blue = np.stack([speed // 8, speed // 3, speed], -1)
            colour = np.where((noise > 0)[..., None], red, blue)
        box[flow] = colour[flow]
    return frames


def tint(frames: np.ndarray) -> np.ndarray:
    """A sepia grey map (some vendors' 'chroma' B-mode): grey v shown as (v, 0.85 v, 0.65 v)."""
    return (frames.astype(np.float32) * np.array([1.0, 0.85, 0.65], np.float32)).astype(np.uint8)
