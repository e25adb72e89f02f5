"""The videos of transfer_learning.py (CAMUS views, HMC-QU recordings, a labelled folder) as one list, and their
clips for an encoder.

- `Video`: one labelled video of a patient; `camus_videos`, `hmcqu_videos`, `folder_videos` list them from the
  readers in datasets.sources.
- `ClipSpec`: what decides a video's clips. CAMUS: its ED->ES half cycle resampled to `frames` (one clip).
  Other videos: datasets.sources.any_video.load_echo_video (sector crop, `target_fps`, 112x112), then clips of
  `frames` frames every `frequency`-th frame on datasets.clips.clip_grid's grid over the whole video (a clip every
  `clip_stride` frames plus the last possible start), normalised as the EchoNet datasets do.
- `VideoClips`: every clip of each video (scoring, embedding); `TrainClips`: one random clip per video, drawn
  from (seed, epoch, index) so that it does not depend on the number of workers or processes.
- `file_identity` and `digest` make the cache keys: a replaced or touched file changes them.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from utils.files.atomic import atomic_open

from .cache import read_cache_entry
from .clips import PAD, clip_grid, cut_clips, num_starts
from .sources import camus, label_folder
from .sources.any_video import load_echo_video


@dataclass(frozen=True)
class Video:
    name: str
    patient: str
    label: float
    path: Path
    files: tuple  # files whose change changes the clips (CAMUS: the sequence and its cfg)
    camus: object = None  # datasets.sources.camus.CamusSample for CAMUS videos


def camus_videos(root, views, qualities=None) -> list[Video]:
    """Every CAMUS view of the given qualities, one video each (patients sorted, then views)."""
    return [Video(s.name, s.patient, s.ef, s.path, (s.path, s.cfg), s)
            for s in camus.list_samples(root, views=views, qualities=qualities)]


def hmcqu_videos(listing) -> list[Video]:
    """The recordings of a datasets.sources.hmcqu listing, label 1 = MI."""
    return [Video(r.recording, r.patient, float(r.label), r.path, (r.path,)) for r in listing.recordings]


def folder_videos(root, labels_file=label_folder.LABELS_FILE) -> list[Video]:
    """The rows of a labelled folder's CSV, in file order."""
    return [Video(row.name, row.patient, row.label, row.path, (row.path,))
            for row in label_folder.read_label_folder(root, labels_file)]


def file_identity(path):
    """[real path, size, modification time in ns]: changes whenever the file is replaced or touched."""
    stat = os.stat(path)
    return [os.path.realpath(path), stat.st_size, stat.st_mtime_ns]


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
    aug: bool = False  # TrainClips: a random 6-pixel shift

    def settings(self, video: Video) -> dict:
        """What, besides the files, decides a video's clips (part of every cache key)."""
        if video.camus is not None:
            return {"dataset": "camus", "frames": self.frames}
        return {"decoder": "any_video", "frames": self.frames, "frequency": self.frequency,
                "clip_stride": self.clip_stride, **self.decoding()}

    def decoding(self) -> dict:
        return {"crop": list(self.crop) if isinstance(self.crop, tuple) else self.crop, "target_fps": self.target_fps}


def decoded_frames(video: Video, spec: ClipSpec, frame_cache) -> np.ndarray:
    """uint8 RGB [F, 112, 112, 3]: CAMUS's ED->ES clip (F = spec.frames), or a whole decoded video (kept in
    frame_cache/, grey as one channel, so fine-tune epochs and further checkpoints skip decoding)."""
    if video.camus is not None:
        return np.repeat(camus.load_frames(video.camus, spec.frames)[..., None], 3, axis=-1)
    path = Path(frame_cache) / f"{digest([file_identity(video.path), spec.decoding()])}.npy"
    stored = read_cache_entry(path)
    if stored is None:
        frames, _ = load_echo_video(video.path, spec.crop, spec.target_fps)
        grey = (frames[..., :1] == frames).all()
        stored = frames[..., :1] if grey else frames
        with atomic_open(path, "wb", fsync=False) as f:  # a lost entry is decoded again
            np.save(f, stored)
    return np.repeat(stored, 3, axis=-1) if stored.shape[-1] == 1 else stored


def clip_protocol(video: Video, n_frames: int, spec: ClipSpec):
    """(starts, frequency) of a video's clips: CAMUS its one resampled clip, others the whole-video grid."""
    if video.camus is not None:
        return np.zeros(1, np.int64), 1
    return clip_grid(n_frames, spec.frames, spec.frequency, spec.clip_stride), spec.frequency


class VideoClips(torch.utils.data.Dataset):
    """Every clip of each video: dict(index, name, image float32 [n_clips, 3, frames, 112, 112], starts, label)."""

    def __init__(self, videos, spec: ClipSpec, frame_cache):
        self.videos, self.spec, self.frame_cache = list(videos), spec, frame_cache

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, index):
        video = self.videos[index]
        frames = decoded_frames(video, self.spec, self.frame_cache)
        starts, frequency = clip_protocol(video, len(frames), self.spec)
        return {"index": index, "name": video.name, "image": cut_clips(frames, starts, self.spec.frames, frequency),
                "starts": torch.from_numpy(starts), "label": torch.tensor([video.label], dtype=torch.float32)}


class TrainClips(VideoClips):
    """One clip per video at a random start (and with `aug` a random 6-pixel shift, as the EchoNet training
    clips), drawn from (seed, epoch, index): the same for any number of workers or processes."""

    def __init__(self, videos, spec: ClipSpec, frame_cache):
        super().__init__(videos, spec, frame_cache)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # seen by persistent workers

    def set_epoch(self, epoch):
        self._epoch.fill_(int(epoch))

    def generator(self, index) -> torch.Generator:
        seed = np.random.SeedSequence([self.spec.seed, int(self._epoch), index]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(seed))

    def __getitem__(self, index):
        video = self.videos[index]
        frames = decoded_frames(video, self.spec, self.frame_cache)
        _, frequency = clip_protocol(video, len(frames), self.spec)
        generator = self.generator(index)
        start = int(torch.randint(num_starts(len(frames), self.spec.frames, frequency), (1,), generator=generator))
        # with aug: zero-pad by PAD pixels and crop 112x112 at one offset for all frames
        offsets = [torch.randint(2 * PAD + 1, (2,), generator=generator).tolist()] if self.spec.aug else None
        return {"name": video.name, "image": cut_clips(frames, [start], self.spec.frames, frequency, offsets)[0],
                "label": torch.tensor([video.label], dtype=torch.float32)}
