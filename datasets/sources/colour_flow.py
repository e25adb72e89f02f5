"""Colour flow in the pixels: a colour Doppler (or power Doppler) map over the sector, for any file, headers or
not (an AVI/MP4 export has none).

Each frame is averaged over STEP x STEP blocks (a GIF's dithered palette then turns back to grey, a colour blob
stays coloured); a block is coloured when its chroma, max(R, G, B) - min(R, G, B), is at least CHROMA_MIN grey
levels (greyscale echo keeps R = G = B up to codec noise), and an opening (2x2 blocks) drops lines and text
strokes (an ECG trace, labels). `ColourMeter` keeps these masks while the frames are read; `fraction(box)` is the median over frames of the coloured share inside the crop, and a loop with more
than MAX_COLOURED_FRACTION is colour flow. The median ignores a few frames with a coloured overlay; the crop
keeps the colour bar and text out. Both thresholds: benchmarks/bench_loop_kind.py (README).
"""
from __future__ import annotations

import cv2
import numpy as np

CHROMA_MIN = 48  # grey levels: above JPEG / H.264 chroma noise on greyscale, below every colour map's hues
MAX_COLOURED_FRACTION = 0.005  # of the crop: real greyscale <= 0.34 %, a colour box of 2 % of the sector ~0.5 %
STEP = 4  # 4x4 blocks: undoes dithering, keeps 1,000s of blocks in a crop


def coloured_pixels(frame: np.ndarray, chroma_min: int = CHROMA_MIN) -> np.ndarray:
    """bool [H/STEP, W/STEP]: which STEP x STEP blocks of an RGB (or BGR) uint8 frame are coloured."""
    height, width = frame.shape[:2]
    if height >= STEP and width >= STEP:  # whole blocks only, so block k covers pixels STEP*k .. STEP*k + STEP - 1
        frame = frame[:height - height % STEP, :width - width % STEP]
    blocks = cv2.resize(frame, (max(1, width // STEP), max(1, height // STEP)), interpolation=cv2.INTER_AREA)
    red, green, blue = cv2.split(blocks)
    chroma = cv2.subtract(cv2.max(cv2.max(red, green), blue), cv2.min(cv2.min(red, green), blue))
    coloured = (chroma >= chroma_min).astype(np.uint8)
    # an opening by 2x2 blocks; an even kernel needs mirrored anchors, else the mask moves one block down-right
    kernel = np.ones((2, 2), np.uint8)
    return cv2.dilate(cv2.erode(coloured, kernel, anchor=(0, 0)), kernel, anchor=(1, 1)).astype(bool)


class ColourMeter:
    """Coloured-pixel masks of the colour frames of one video, to judge inside a crop found later."""

    def __init__(self, chroma_min: int = CHROMA_MIN):
        self.chroma_min = chroma_min
        self.masks: list[np.ndarray] = []

    def add(self, frame: np.ndarray) -> None:
        if frame.ndim == 3:  # a grey frame has no colour to measure
            self.masks.append(coloured_pixels(frame, self.chroma_min))

    def fraction(self, box: tuple[int, int, int, int]) -> float:
        """Median over frames of the coloured share of the pixels inside box (x, y, w, h); 0 for grey videos."""
        if not self.masks:
            return 0.0
        x, y, w, h = box
        # blocks whose first pixel lies inside the box
        rows = slice(-(-y // STEP), -(-(y + h) // STEP))
        cols = slice(-(-x // STEP), -(-(x + w) // STEP))
        shares = [mask[rows, cols].mean() if mask[rows, cols].size else 0.0 for mask in self.masks]
        return float(np.median(shares))


def is_colour_flow(fraction: float) -> bool:
    return fraction > MAX_COLOURED_FRACTION


def colour_flow_reason(fraction: float) -> str:
    """The skip reason of a loop whose crop is `fraction` coloured, or '' when it is greyscale."""
    if not is_colour_flow(fraction):
        return ""
    return (f"colour Doppler in the pixels: {100 * fraction:.1f} % of the crop is coloured (over "
            f"{100 * MAX_COLOURED_FRACTION:g} %)")
