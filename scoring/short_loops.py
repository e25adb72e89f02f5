"""Clips of a loop shorter than one clip: clinical cine loops are often 1-2 heartbeats, less than the
frames x frequency frames one clip spans (36 x 4 = 144 frames, 2.9 s at 50 fps). Three ways to fill a clip:

- `pad` (the released data pipeline): zero-pad at the end to frames x frequency frames; the model then sees
  black frames for the rest of the clip.
- `repeat`: play the loop again: frame k of the clip's length is frame k mod n of the loop (a loop of whole
  heartbeats, as scanners store them, continues almost seamlessly).
- `fit`: a shorter sampling period, frequency' = max(1, n // frames), so that one clip lies within the loop
  (it then covers less time, at a finer step than the model was trained on); a loop shorter than `frames`
  is sampled every frame and zero-padded.

`short_loop_plan` says which frames, sampling period and stride a video is cut with; videos of at least
frames x frequency frames are never changed. benchmarks/bench_short_loops.py measures the three on cut videos.
"""
from __future__ import annotations

import numpy as np

from datasets.clips import padded_length

POLICIES = ("pad", "repeat", "fit")


def short_loop_plan(video: np.ndarray, frames: int, frequency: int, stride: int, policy: str
                    ) -> tuple[np.ndarray, int, int, str | None]:
    """(frames to cut clips from, sampling period, clip stride, note or None) for `video` [n, ...] under
    `policy`; the video, `frequency` and `stride` unchanged (note None) when it is at least one clip long."""
    n, length = len(video), frames * frequency
    if n >= length:
        return video, frequency, stride, None
    short = f"shorter than one clip ({n} < {frames} x {frequency} frames): "
    if policy == "pad":
        return video, frequency, stride, (short + f"zero-padded at the end to "
                                          f"{padded_length(n, frames, frequency)} frames, as in training")
    if policy == "repeat":
        return video[np.arange(length) % n], frequency, stride, (
            short + f"the loop played {length / n:.2f} times to fill {length} frames (--short_loops repeat)")
    if policy == "fit":
        step = max(1, n // frames)
        note = short + f"sampled every {step} frame(s) instead of {frequency} to fit (--short_loops fit)"
        if n < frames:
            note += f", zero-padded to {frames} frames"
        return video, step, max(1, stride * step // frequency), note
    raise ValueError(f"short-loop policy must be one of {', '.join(POLICIES)}, got {policy!r}")
