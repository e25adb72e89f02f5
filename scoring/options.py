"""The options predict.py and the web page share: the model and how it runs, how a file is read and cut into
clips, and which of them a resumed run must keep (`RESULT_SETTINGS`)."""
from datasets.sources.any_video import DEFAULT_FPS
from models.options import add_model_args
from utils.script.validators import non_negative_float, non_negative_int, positive_int

from .archive_clips import ShortLoopSettings
from .short_loops import POLICIES

DEFAULT_LOOPS = ShortLoopSettings()  # the defaults of --short_loops, --min_frames, --min_seconds
# what a resumed run must share with the rows it keeps
RESULT_SETTINGS = ("pretrained_weights", "model", "frames", "frequency", "clip_stride", "crop", "target_fps",
                   "short_loops", "min_frames", "min_seconds", "amp", "depthwise", "familiarity_reference")


def add_scoring_args(parser):
    """--model ... --depthwise (the paper's clip shape by default), --crop, --target_fps, --clip_stride,
    --short_loops, --min_frames, --min_seconds and --batch_size."""
    add_model_args(parser, frames=36, frequency=4, from_checkpoint=True)  # models.settings.SCORING_DEFAULTS
    parser.add_argument("--crop", type=str, default="auto",
                        help="auto = the moving ultrasound sector, none = whole frame, or a box x,y,w,h in pixels")
    parser.add_argument("--target_fps", type=non_negative_float, default=DEFAULT_FPS,
                        help="resample every video to this frame rate (nearest frame); 0 keeps the source rate")
    parser.add_argument("--clip_stride", type=positive_int, default=None,
                        help="frames between clip starts (default: frames * frequency // 2)")
    parser.add_argument("--short_loops", choices=POLICIES, default=DEFAULT_LOOPS.short_loops,
                        help="a loop shorter than one clip: repeat it, pad it with black frames (as in training) "
                             "or fit the clip in it with a shorter sampling period")
    parser.add_argument("--min_frames", type=non_negative_int, default=DEFAULT_LOOPS.min_frames,
                        help="skip videos of fewer source frames")
    parser.add_argument("--min_seconds", type=non_negative_float, default=DEFAULT_LOOPS.min_seconds,
                        help="skip videos shorter than this (when their frame rate is known)")
    parser.add_argument("--batch_size", type=positive_int, default=16,
                        help="clips per forward pass on a GPU (a CPU runs one clip at a time)")


def result_settings(opt) -> dict:
    """The options of `opt` that shape the results (RESULT_SETTINGS), as kept beside them."""
    return {key: getattr(opt, key, None) for key in RESULT_SETTINGS}  # familiarity_reference: set by predict.py
