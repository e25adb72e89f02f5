"""The videos of transfer_learning.py (CAMUS views, HMC-QU recordings, a labelled folder) as one list, and their
clips for an encoder.

- `Video`: one labelled video of a patient; `camus_videos`, `hmcqu_videos`, `folder_videos` list them from the
  readers in datasets.sources.
- `ClipSpec`: what decides a video's clips. CAMUS: its ED->ES half cycle resampled to `frames` (one clip).
  Other videos: datasets.sources.any_video.load_echo_video (sector crop, `target_fps`, 112x112), then clips of
  `frames` frames every `frequency`-th frame on datasets.clips.clip_grid's grid (a clip every `clip_stride`
  frames plus the last possible start) over the whole video, or over its annotated cycle (HMC-QU's
  'Reference Frame' -> 'End of Cycle', cut at the native rate, then resampled to `target_fps` like the rest).
  Normalisation: the EchoNet MEAN / STD per channel ('echonet', what CoReEcho's encoder was trained on), or the
  released CAMUS fine-tuning statistics ('camus': mean 40.94405, std 54.723774 on the 0..255 scale).
- `VideoClips`: every clip of each video (scoring, embedding); `TrainClips`: one random clip per video,
  optionally augmented ('shift', or the released CAMUS 'affine'), drawn from (seed, epoch, index).
- `file_identity` and `digest` make the cache keys: a replaced or touched file changes them.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from utils.files.atomic import atomic_open
from utils.files.identity import file_stamp
from utils.script.errors import BadInputError

from .cache import read_cache_entry
from .clips import MEAN, PAD, STD, clip_grid, cut_clips, num_starts
from .epoch_seed import SeededEpochs
from .sources import camus, label_folder
from .sources.any_video import load_echo_video, resample_frames

CAMUS_MEAN, CAMUS_STD = 40.94405, 54.723774  # the released transfer-learning code's CAMUS statistics
NORMALISATIONS = ("echonet", "camus")
AUGMENTATIONS = ("none", "shift", "affine")
AFFINE_DEGREES, AFFINE_TRANSLATE, AFFINE_SCALE = 10.0, 0.1, (0.8, 1.1)


@dataclass(frozen=True)
class Video:
    name: str
    patient: str
    label: float
    path: Path
    files: tuple  # files whose change changes the clips (CAMUS: the sequence and its cfg)
    camus: object = None  # datasets.sources.camus.CamusSample for CAMUS videos
    cycle: tuple | None = None  # (first, last) 1-based native frames: clips over these only


def camus_videos(root, views, qualities=None) -> list[Video]:
    """Every CAMUS view of the given qualities, one video each (patients sorted, then views)."""
    return [Video(s.name, s.patient, s.ef, s.path, (s.path, s.cfg), s)
            for s in camus.list_samples(root, views=views, qualities=qualities)]


def hmcqu_videos(listing) -> list[Video]:
    """The recordings of a datasets.sources.hmcqu listing, label 1 = MI (with their cycles, when read)."""
    return [Video(r.recording, r.patient, float(r.label), r.path, (r.path,), cycle=r.cycle)
            for r in listing.recordings]


def folder_videos(root, labels_file=label_folder.LABELS_FILE) -> list[Video]:
    """The rows of a labelled folder's CSV, in file order."""
    return [Video(row.name, row.patient, row.label, row.path, (row.path,))
            for row in label_folder.read_label_folder(root, labels_file)]


def file_identity(path):
    """[real path, size, modification time in ns]: changes whenever the file is replaced or touched."""
    return [os.path.realpath(path), *file_stamp(path)]


def digest(obj, length=24):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class ClipSpec:
    frames: int
    frequency: int
    clip_stride: int
    crop: object = "auto"  # 'auto', 'none' or (x, y, w, h)
    target_fps: float = 50.0
    seed: int = 0  # TrainClips' draws
    aug: str = "none"  # TrainClips: none, shift or affine
    normalisation: str = "echonet"  # or camus

    def settings(self, video: Video) -> dict:
        """What, besides the files, decides a video's clips (part of every cache key)."""
        if video.camus is not None:
            return {"dataset": "camus", "frames": self.frames, "normalisation": self.normalisation}
        return {"decoder": "any_video", "frames": self.frames, "frequency": self.frequency,
                "clip_stride": self.clip_stride, "normalisation": self.normalisation, **self.decoding(video)}

    def decoding(self, video: Video) -> dict:
        return {"crop": list(self.crop) if isinstance(self.crop, tuple) else self.crop, "target_fps": self.target_fps,
                "cycle": None if video.cycle is None else list(video.cycle)}


def _decode(video: Video, clip_spec: ClipSpec) -> np.ndarray:
    """The model's frames of a whole video, or of its annotated cycle (cut at the native rate, then resampled)."""
    if video.cycle is None:
        return load_echo_video(video.path, clip_spec.crop, clip_spec.target_fps)[0]
    frames, info = load_echo_video(video.path, clip_spec.crop, 0)  # the sector is found over the whole recording
    first, last = video.cycle
    if last > len(frames):
        raise BadInputError(f"{video.path} has {len(frames)} frames but its annotated cycle ends at frame {last} "
                            "(--hmcqu_frames all uses the whole recording)")
    return resample_frames(frames[first - 1:last], info.source_fps, clip_spec.target_fps)[0]


def decoded_frames(video: Video, clip_spec: ClipSpec, frame_cache) -> np.ndarray:
    """uint8 RGB [F, 112, 112, 3]: CAMUS's ED->ES clip (F = clip_spec.frames), or a decoded video or cycle (kept in
    frame_cache/, grey as one channel, so fine-tune epochs and further checkpoints skip decoding)."""
    if video.camus is not None:
        return np.repeat(camus.load_frames(video.camus, clip_spec.frames)[..., None], 3, axis=-1)
    path = Path(frame_cache) / f"{digest([file_identity(video.path), clip_spec.decoding(video)])}.npy"
    stored = read_cache_entry(path)
    if stored is None:
        frames = _decode(video, clip_spec)
        grey = (frames[..., :1] == frames).all()
        stored = frames[..., :1] if grey else frames
        with atomic_open(path, "wb", fsync=False) as f:  # a lost entry is decoded again
            np.save(f, stored)
    return np.repeat(stored, 3, axis=-1) if stored.shape[-1] == 1 else stored


def normalised(clips: torch.Tensor, normalisation: str) -> torch.Tensor:
    """Clips cut by datasets.clips.cut_clips (EchoNet MEAN / STD per channel), as `normalisation` wants them."""
    if normalisation == "echonet":
        return clips
    # (pixel - MEAN) / STD -> (pixel - CAMUS_MEAN) / CAMUS_STD, one multiply-add per channel
    scale = torch.tensor(STD / CAMUS_STD, dtype=torch.float32).view(3, 1, 1, 1)
    shift = torch.tensor((MEAN - CAMUS_MEAN) / CAMUS_STD, dtype=torch.float32).view(3, 1, 1, 1)
    return clips * scale + shift


def affine_parameters(generator: torch.Generator, size: int) -> tuple[float, tuple[int, int], float]:
    """(angle in degrees, (dx, dy) in whole pixels, scale) drawn as torchvision's RandomAffine(10, translate=(0.1,
    0.1), scale=(0.8, 1.1)) draws them for a size x size image."""
    def uniform(low, high):
        return float(torch.empty(()).uniform_(low, high, generator=generator))

    angle = uniform(-AFFINE_DEGREES, AFFINE_DEGREES)
    reach = AFFINE_TRANSLATE * size
    shift = (int(round(uniform(-reach, reach))), int(round(uniform(-reach, reach))))
    return angle, shift, uniform(*AFFINE_SCALE)


def affine_frames(frames: np.ndarray, angle: float, shift, scale: float) -> np.ndarray:
    """uint8 frames [T, H, W, C] under one affine transform: rotation by `angle` (counter-clockwise) and scaling
    about the centre, then the shift; bilinear, black outside the frame."""
    height, width = frames.shape[1:3]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, scale)
    matrix[:, 2] += shift
    return np.stack([cv2.warpAffine(frame, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0).reshape(frame.shape)
                     for frame in frames])


def clip_protocol(video: Video, n_frames: int, clip_spec: ClipSpec):
    """(starts, frequency) of a video's clips: CAMUS its one resampled clip, others the whole-video grid."""
    if video.camus is not None:
        return np.zeros(1, np.int64), 1
    return clip_grid(n_frames, clip_spec.frames, clip_spec.frequency, clip_spec.clip_stride), clip_spec.frequency


class VideoClips(torch.utils.data.Dataset):
    """Every clip of each video: dict(index, name, image float32 [n_clips, 3, frames, 112, 112], starts, label)."""

    def __init__(self, videos, clip_spec: ClipSpec, frame_cache):
        self.videos, self.clip_spec, self.frame_cache = list(videos), clip_spec, frame_cache

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, index):
        video = self.videos[index]
        frames = decoded_frames(video, self.clip_spec, self.frame_cache)
        starts, frequency = clip_protocol(video, len(frames), self.clip_spec)
        clips = normalised(cut_clips(frames, starts, self.clip_spec.frames, frequency), self.clip_spec.normalisation)
        return {"index": index, "name": video.name, "image": clips, "starts": torch.from_numpy(starts),
                "label": torch.tensor([video.label], dtype=torch.float32)}


class TrainClips(SeededEpochs, VideoClips):
    """One clip per video at a random start, augmented by `clip_spec.aug` (none; shift: the EchoNet training
    clips' 6-pixel pad-and-crop; affine: `affine_parameters` / `affine_frames`, one draw for all frames of the
    clip), drawn from (seed, epoch, index): the same for any number of workers or processes (epoch_seed.py)."""

    def __init__(self, videos, clip_spec: ClipSpec, frame_cache):
        super().__init__(videos, clip_spec, frame_cache)
        self.seed = clip_spec.seed
        self._share_epoch()

    def __getitem__(self, index):
        video, clip_spec = self.videos[index], self.clip_spec
        frames = decoded_frames(video, clip_spec, self.frame_cache)
        _, frequency = clip_protocol(video, len(frames), clip_spec)
        generator = self.item_generator(index)  # its start, then its augmentation
        start = int(torch.randint(num_starts(len(frames), clip_spec.frames, frequency), (1,), generator=generator))
        if clip_spec.aug == "affine":  # the clip's frames (black past the end, as the zero-padding), then warped
            rows = start + frequency * np.arange(clip_spec.frames)
            clip = np.zeros((clip_spec.frames, *frames.shape[1:]), np.uint8)
            clip[rows < len(frames)] = frames[rows[rows < len(frames)]]
            frames, start, frequency = affine_frames(clip, *affine_parameters(generator, clip.shape[2])), 0, 1
        # shift: zero-pad by PAD pixels and crop 112x112 at one offset for all frames
        offsets = [torch.randint(2 * PAD + 1, (2,), generator=generator).tolist()] if clip_spec.aug == "shift" else None
        image = normalised(cut_clips(frames, [start], clip_spec.frames, frequency, offsets), clip_spec.normalisation)[0]
        return {"name": video.name, "image": image, "label": torch.tensor([video.label], dtype=torch.float32)}
