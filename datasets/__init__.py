"""Data for CoReEcho: EchoNet-Dynamic, any echo video, the transfer sources, and synthetic stand-ins for them.

- `echonet`: the EchoNet-Dynamic datasets of the released code, `EchoNet` (one random clip per video),
  `EchoNetRNC` (two views, stage 1), `EchoNetFixedClips` (validation), `EchoNetTest` (the test split at the
  released start indexes), plus `EchoNetAllClips` (every video's grid of clips).
- `clips`: the one clip cutter of every dataset: valid starts (`num_starts`, `padded_length`), the grid over
  a whole video (`clip_grid`), cutting with zero-padding, the augmentation's crop and normalisation
  (`cut_clips`, `normalise` with MEAN / STD, `denormalise`).
- `video`: decoding EchoNet AVI files with OpenCV (`VideoReader`, `decode_video`, `frame_count`).
- `cache`: the decoded-video cache (`open_cached`; one memory-mappable .npy per video).
- `headers`: every video's frame count read from its header before any work starts, cached.
- `start_indexes`: fixed test starts, loaded (pickle with a safe unpickler, JSON, CSV) and saved (JSON).
- `tables`: reading a user's CSV file with one-line errors; `text`: file names and message helpers.
- `transfer`: the labelled videos of transfer_learning.py (CAMUS, HMC-QU, a folder) and their clips.
- `sources/`: readers of other data: any echo video incl. DICOM (`any_video`, `dicom`), all grid clips of
  video files for predict.py (`video_files`), CAMUS (`camus`), HMC-QU (`hmcqu`), a labelled folder
  (`label_folder`).
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
