"""scoring/short_loops.py: the three ways to cut a loop shorter than one clip."""
import numpy as np
import pytest

from datasets.clips import clip_grid
from scoring.short_loops import short_loop_plan


def test_short_loop_policies():
    video = np.arange(50, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    same, step, stride, note = short_loop_plan(video, 36, 4, 72, "pad")
    assert same is video and (step, stride) == (4, 72) and "zero-padded at the end to 144 frames" in note
    looped, step, stride, note = short_loop_plan(video, 36, 4, 72, "repeat")
    assert looped.shape == (144, 2, 2, 3) and looped[:, 0, 0, 0].tolist() == [k % 50 for k in range(144)]
    assert (step, stride) == (4, 72) and "the loop played 2.88 times to fill 144 frames" in note
    fitted, step, stride, note = short_loop_plan(video, 36, 4, 72, "fit")
    assert fitted is video and (step, stride) == (1, 18) and "sampled every 1 frame(s) instead of 4" in note
    assert clip_grid(len(fitted), 36, step, stride).tolist() == [0, 14]  # inside the loop: no black frame
    assert short_loop_plan(video, 16, 2, 16, "repeat")[1:] == (2, 16, None)  # 50 >= 32 frames: unchanged
    with pytest.raises(ValueError, match="short-loop policy must be one of pad, repeat, fit"):
        short_loop_plan(video, 36, 4, 72, "stretch")
