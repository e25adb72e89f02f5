"""Inference over videos: every clip of a video through the model, many videos per forward on a GPU, one
clip at a time on a CPU, and (under torchrun) every video of a dataset scored exactly once across the ranks.

`infer_videos` is the one loop that every script scoring videos uses (predict.py, transfer_learning.py,
visualize.py, the test script and the training stages' validation through `predict`)."""
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Subset

from utils.engine.amp import autocast, prepare_batch
from utils.engine.distributed import gather_objects
from utils.engine.loaders import batches, video_loader
from utils.evaluation.metrics import regression_metrics
from utils.files.checkpoint import unwrap


@dataclass(frozen=True)
class InferenceSettings:
    """How clips go through the model. On a GPU a forward takes the clips of several videos: a group closes at
    `max_videos` videos or `max_clips` clips (which is then also the largest forward); a CPU takes one video at a
    time, one clip per forward (a 3D network runs fastest so there: cache-bound)."""
    amp: Optional[torch.dtype] = None  # autocast dtype; None: fp32
    channels_last: bool = False
    max_videos: Optional[int] = None
    max_clips: Optional[int] = None
    num_workers: int = 0  # data-loader workers of predict


@torch.no_grad()
def embed_clips(model, clips, device, amp=None, channels_last=False, gpu_batch=None):
    """Embeddings (float32 [n, d], on `device`) of clips [n, 3, T, H, W]: on a GPU `gpu_batch` clips per
    forward (None: all at once), on a CPU one at a time."""
    clips = prepare_batch(clips, device, channels_last)
    # GPUs like big batches; on CPUs a 3D network runs fastest one clip at a time (cache-bound).
    chunk = (gpu_batch or len(clips)) if device.type == "cuda" else 1
    with autocast(device, amp):
        return torch.cat([model(part)[1].float() for part in clips.split(max(1, chunk))])


def _groups(items, device, max_clips=None, max_videos=None):
    """Video items in groups for one forward: on a CPU one video a group; on a GPU until a group holds
    `max_clips` clips or `max_videos` videos."""
    group = []
    for item in items:
        group.append(item)
        if device.type != "cuda" or (max_clips and sum(len(g["image"]) for g in group) >= max_clips) \
                or (max_videos and len(group) >= max_videos):
            yield group
            group = []
    if group:
        yield group


@torch.no_grad()
def infer_videos(model, items, device, settings=InferenceSettings(), regressor=None):
    """For every video item (a dict whose 'image' holds its clips [n_clips, 3, T, H, W]; n_clips may be 0),
    in order: (item, clip embeddings float32 [n_clips, d], regressor outputs float32 [n_clips] or None).
    The model (and regressor) must be in eval mode on `device`."""
    for group in _groups(items, device, settings.max_clips, settings.max_videos):
        clips = torch.cat([item["image"] for item in group])
        if len(clips):
            embeddings = embed_clips(model, clips, device, settings.amp, settings.channels_last,
                                     gpu_batch=settings.max_clips)
            outputs = None if regressor is None else regressor(embeddings).float().view(-1).cpu().numpy()
            embeddings = embeddings.cpu().numpy()
        begin = 0
        for item in group:
            end = begin + len(item["image"])
            if begin == end:  # no clip at all (a video that could not be read)
                yield item, np.zeros((0, 0), np.float32), None if regressor is None else np.zeros(0, np.float32)
            else:
                yield item, embeddings[begin:end], None if regressor is None else outputs[begin:end]
            begin = end


def predict(model, regressor, dataset, dist, settings=InferenceSettings(max_videos=8), progress=None):
    """Score every video of a dataset whose items hold `image` [n_clips, 3, T, H, W] (n_clips may differ between
    videos, e.g. datasets.echonet.EchoNetAllClips), every video once across the ranks. `progress(iterable, total)`
    may wrap the videos (a progress bar).

    Returns a dict in dataset order: names, labels [N], n_clips [N], predictions [N] and embeddings [N, d] (means
    over each video's clips), and per clip clip_predictions [N, n_clips], clip_embeddings [N, n_clips, d] and
    starts [N, n_clips]: arrays when every video has the same number of clips, else lists of N arrays.
    """
    model, regressor = unwrap(model).eval(), unwrap(regressor).eval()
    # Ranks take interleaved videos without padding, so nothing is duplicated or dropped.
    my_indices = list(range(dist.rank, len(dataset), dist.world_size))
    loader = video_loader(Subset(dataset, my_indices), settings.num_workers, dist.device)
    items = batches(loader)
    items = progress(items, total=len(loader)) if progress else items
    rows = []
    for item, embeddings, clip_predictions in infer_videos(model, items, dist.device, settings, regressor):
        starts = item["starts"].numpy().reshape(-1) if "starts" in item else np.full(len(embeddings), -1)
        rows.append((my_indices[len(rows)], item["name"], float(torch.as_tensor(item["label"]).reshape(-1)[0]),
                     np.asarray(clip_predictions, dtype=np.float64), embeddings, starts))

    rows = sorted((row for rank_rows in gather_objects(rows) for row in rank_rows), key=lambda row: row[0])
    if [row[0] for row in rows] != list(range(len(dataset))):
        raise RuntimeError("distributed evaluation lost or duplicated videos")
    _, names, labels, clip_predictions, clip_embeddings, starts = (list(column) for column in zip(*rows))
    n_clips = np.array([len(p) for p in clip_predictions], dtype=np.int64)
    if len(set(n_clips)) == 1:  # fixed clips: one array each
        clip_predictions, clip_embeddings, starts = map(np.stack, (clip_predictions, clip_embeddings, starts))
    return {
        "names": names,
        "labels": np.asarray(labels, dtype=np.float64),
        "n_clips": n_clips,
        "clip_predictions": clip_predictions,
        "predictions": np.array([p.mean() for p in clip_predictions]),
        "clip_embeddings": clip_embeddings,
        "embeddings": np.stack([e.mean(axis=0) for e in clip_embeddings]),
        "starts": starts,
    }


def evaluate(model, regressor, dataset, dist, settings=InferenceSettings(max_videos=8), progress=None):
    """predict() plus MAE/RMSE/R² of the clip-averaged prediction."""
    result = predict(model, regressor, dataset, dist, settings, progress)
    return regression_metrics(result["predictions"], result["labels"]), result
