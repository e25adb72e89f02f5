"""Inference over multi-clip datasets: one decode per video, all its clips through the model at once,
many videos per batch, and (under torchrun) every video scored exactly once across the ranks."""
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from utils.files.checkpoint import unwrap
from utils.engine.distributed import gather_objects
from utils.evaluation.metrics import regression_metrics
from utils.engine.amp import autocast, prepare_batch
from utils.engine.loaders import batches


@torch.no_grad()
def embed_clips(model, clips, device, amp=None, channels_last=False, gpu_batch=None):
    """Embeddings (float32 [n, d], on `device`) of clips [n, 3, T, H, W]: on a GPU `gpu_batch` clips per
    forward (None: all at once), on a CPU one at a time."""
    clips = prepare_batch(clips, device, channels_last)
    # GPUs like big batches; on CPUs a 3D network runs fastest one clip at a time (cache-bound).
    chunk = (gpu_batch or len(clips)) if device.type == "cuda" else 1
    with autocast(device, amp):
        return torch.cat([model(part)[1].float() for part in clips.split(max(1, chunk))])


def concat_clips(items):
    """DataLoader collate for items with a varying number of clips: image [total clips, 3, T, H, W] and
    starts [total clips] concatenated, clip_counts [n_videos] to split them again, name, label [n_videos, 1]."""
    return {"name": [item["name"] for item in items],
            "image": torch.cat([item["image"] for item in items]),
            "starts": torch.cat([item["starts"] for item in items]),
            "clip_counts": torch.tensor([len(item["image"]) for item in items], dtype=torch.int64),
            "label": torch.stack([item["label"] for item in items])}


def _score_videos(model, regressor, dataset, dist, batch_size, num_workers, amp, channels_last, progress,
                  collate_fn=None):
    """Rows (index, name, label, clip predictions [n_clips], clip embeddings [n_clips, d], starts [n_clips])
    of every video of `dataset`, in dataset order, gathered from all ranks."""
    model, regressor = unwrap(model).eval(), unwrap(regressor).eval()
    # Ranks take interleaved videos without padding, so nothing is duplicated or dropped.
    my_indices = list(range(dist.rank, len(dataset), dist.world_size))
    # Own generator: the workers' base seed is not drawn from the global RNG (see runtime.make_loader).
    loader = DataLoader(Subset(dataset, my_indices), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=dist.device.type == "cuda",
                        generator=torch.Generator().manual_seed(0), collate_fn=collate_fn)
    rows = []
    iterator = batches(loader)
    for batch in (progress(iterator, total=len(loader)) if progress else iterator):
        images = batch["image"]
        if "clip_counts" in batch:  # clips of all videos concatenated
            counts = batch["clip_counts"].tolist()
        else:  # [n_videos, n_clips, 3, T, H, W]
            counts = [images.shape[1]] * images.shape[0]
            images = images.flatten(0, 1)
        embeddings = embed_clips(model, images, dist.device, amp, channels_last)
        clip_predictions = regressor(embeddings).float().view(-1).cpu().numpy()
        embeddings = embeddings.cpu().numpy()
        starts = batch["starts"].cpu().numpy().reshape(-1) if "starts" in batch else np.full(len(images), -1)
        ends = np.cumsum(counts)
        for i, (begin, end) in enumerate(zip(ends - counts, ends)):
            rows.append((my_indices[len(rows)], batch["name"][i], float(batch["label"][i].reshape(-1)[0]),
                         clip_predictions[begin:end], embeddings[begin:end], starts[begin:end]))

    rows = sorted((row for rank_rows in gather_objects(rows) for row in rank_rows), key=lambda row: row[0])
    if [row[0] for row in rows] != list(range(len(dataset))):
        raise RuntimeError("distributed evaluation lost or duplicated videos")
    return rows


@torch.no_grad()
def predict(model, regressor, dataset, dist, batch_size=8, num_workers=0, amp=None, channels_last=False,
            progress=None):
    """Score every video of a dataset whose items hold `image` [n_clips, 3, T, H, W].

    Returns a dict of arrays in dataset order: names, labels [N], clip_predictions [N, n_clips],
    predictions [N] (mean over clips), clip_embeddings [N, n_clips, d], embeddings [N, d] (mean over
    clips), starts [N, n_clips].
    """
    rows = _score_videos(model, regressor, dataset, dist, batch_size, num_workers, amp, channels_last, progress)
    _, names, labels, clip_predictions, embeddings, starts = zip(*rows)
    clip_predictions = np.stack(clip_predictions).astype(np.float64)
    clip_embeddings = np.stack(embeddings)
    return {
        "names": list(names),
        "labels": np.asarray(labels, dtype=np.float64),
        "clip_predictions": clip_predictions,
        "predictions": clip_predictions.mean(axis=1),
        "clip_embeddings": clip_embeddings,
        "embeddings": clip_embeddings.mean(axis=1),
        "starts": np.stack(starts),
    }


@torch.no_grad()
def predict_variable_clips(model, regressor, dataset, dist, batch_size=8, num_workers=0, amp=None,
                           channels_last=False, progress=None):
    """predict() for datasets whose videos have different numbers of clips (e.g. datasets.clip_grid.
    EchoNetAllClips): batches are concatenated with `concat_clips`.

    Returns, in dataset order: names, labels [N], n_clips [N], clip_predictions and starts (lists of N
    arrays [n_clips_i]), predictions [N] (mean over each video's clips), embeddings [N, d] (mean over clips).
    """
    rows = _score_videos(model, regressor, dataset, dist, batch_size, num_workers, amp, channels_last, progress,
                         collate_fn=concat_clips)
    _, names, labels, clip_predictions, embeddings, starts = zip(*rows)
    clip_predictions = [np.asarray(p, dtype=np.float64) for p in clip_predictions]
    return {
        "names": list(names),
        "labels": np.asarray(labels, dtype=np.float64),
        "n_clips": np.array([len(p) for p in clip_predictions], dtype=np.int64),
        "clip_predictions": clip_predictions,
        "predictions": np.array([p.mean() for p in clip_predictions]),
        "embeddings": np.stack([e.mean(axis=0) for e in embeddings]),
        "starts": list(starts),
    }


def evaluate(model, regressor, dataset, dist, **kwargs):
    """predict() plus MAE/RMSE/R² of the clip-averaged prediction."""
    result = predict(model, regressor, dataset, dist, **kwargs)
    return regression_metrics(result["predictions"], result["labels"]), result
