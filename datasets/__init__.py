"""EchoNet-Dynamic data for CoReEcho: datasets, decoding, decoded-video cache, start indexes, synthetic data."""
from .cache import open_cached
from .echonet import (MEAN, STD, EchoNet, EchoNetFixedClips, EchoNetRNC, EchoNetTest, normalise, num_starts,
                      padded_length)
from .start_indexes import SafeUnpickler, UnsafePickleError, load_start_indexes, save_start_indexes
from .synthetic.echonet import make_synthetic_echonet
from .video import VideoReader, decode_video, frame_count

__all__ = [
    "EchoNet", "EchoNetRNC", "EchoNetFixedClips", "EchoNetTest", "MEAN", "STD", "normalise", "num_starts",
    "padded_length",
    "VideoReader", "decode_video", "frame_count", "open_cached",
    "load_start_indexes", "save_start_indexes", "SafeUnpickler", "UnsafePickleError",
    "make_synthetic_echonet",
]

