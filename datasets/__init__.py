"""Data for CoReEcho: EchoNet-Dynamic, the transfer sources, and synthetic stand-ins for them.

- `echonet`: the one EchoNet-Dynamic dataset class, `EchoNet`, with a starts policy (random / fixed / grid);
  `EchoNetRNC`, `EchoNetFixedClips`, `EchoNetTest` and `EchoNetAllClips` are presets of it.
- `filelist`: FileList.csv and VolumeTracings.csv read and checked; `epoch_seed`: per-item seeded draws.
- `clips`: the one clip cutter (valid starts, the grid over a video, padding, crop, normalisation).
- `video`: EchoNet AVI decoding; `cache`: the decoded-video cache; `headers`: frame counts read up front.
- `start_indexes`: fixed test starts (pickle with a safe unpickler, JSON, CSV); `tables`: a user's CSV.
- `transfer`: the labelled videos of transfer_learning.py (CAMUS, HMC-QU, a folder) and their clips.
- `sources/`: readers of other data (any echo video, DICOM, CAMUS, HMC-QU, a labelled folder).
- `synthetic/`: generators of data in the layouts of the real releases (EchoNet-Dynamic, CAMUS, HMC-QU).
"""
from .cache import open_cached
from .clips import MEAN, STD, normalise, num_starts, padded_length
from .echonet import EchoNet, EchoNetAllClips, EchoNetFixedClips, EchoNetRNC, EchoNetTest
from .start_indexes import SafeUnpickler, UnsafePickleError, load_start_indexes, save_start_indexes
from .synthetic.echonet import make_synthetic_echonet
from .video import VideoReader, decode_video, frame_count

__all__ = [
    "EchoNet", "EchoNetRNC", "EchoNetFixedClips", "EchoNetTest", "EchoNetAllClips", "MEAN", "STD", "normalise",
    "num_starts", "padded_length",
    "VideoReader", "decode_video", "frame_count", "open_cached",
    "load_start_indexes", "save_start_indexes", "SafeUnpickler", "UnsafePickleError",
    "make_synthetic_echonet",
]
