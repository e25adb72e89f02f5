"""Inference over multi-clip datasets: one decode per video, all its clips through the model at once,
many videos per batch, and (under torchrun) every video scored exactly once across the ranks."""
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from utils.checkpoint import unwrap
from utils.distributed import gather_objects
from utils.metrics import regression_metrics
from utils.runtime import autocast, batches, prepare_batch


@torch.no_grad()
def predict(model, regressor, dataset, dist, batch_size=8, num_workers=0, amp=None, channels_last=False,
            progress=None):
    """Score every video of a dataset whose items hold `image` [n_clips, 3, T, H, W].

    Returns a dict of arrays in dataset order: names, labels [N], clip_predictions [N, n_clips],
    predictions [N] (mean over clips), clip_embeddings [N, n_clips, d], embeddings [N, d] (mean over
    clips), starts [N, n_clips].
    """
    model, regressor = unwrap(model).eval(), unwrap(regressor).eval()
    # Ranks take interleaved videos without padding, so nothing is duplicated or dropped.
    my_indices = list(range(dist.rank, len(dataset), dist.world_size))
    loader = DataLoader(Subset(dataset, my_indices), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=dist.device.type == "cuda")
    rows = []
    iterator = batches(loader)
    for batch in (progress(iterator, total=len(loader)) if progress else iterator):
        images = batch["image"]
        n_videos, n_clips = images.shape[:2]
        clips = prepare_batch(images.flatten(0, 1), dist.device, channels_last)
        # GPUs like big batches; on CPUs a 3D network runs fastest one clip at a time (cache-bound).
        chunk = len(clips) if dist.device.type == "cuda" else 1
        with autocast(dist.device, amp):
            embeddings = torch.cat([model(part)[1].float() for part in clips.split(chunk)])
        clip_predictions = regressor(embeddings).float().view(n_videos, n_clips).cpu().numpy()
        embeddings = embeddings.view(n_videos, n_clips, -1).cpu().numpy()
        starts = batch["starts"].cpu().numpy() if "starts" in batch else np.full((n_videos, n_clips), -1)
        for i in range(n_videos):
            rows.append((my_indices[len(rows)], batch["name"][i], float(batch["label"][i].reshape(-1)[0]),
                         clip_predictions[i], embeddings[i], starts[i]))

    rows = sorted((row for rank_rows in gather_objects(rows) for row in rank_rows), key=lambda row: row[0])
    if [row[0] for row in rows] != list(range(len(dataset))):
        raise RuntimeError("distributed evaluation lost or duplicated videos")
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


def evaluate(model, regressor, dataset, dist, **kwargs):
    """predict() plus MAE/RMSE/R² of the clip-averaged prediction."""
    result = predict(model, regressor, dataset, dist, **kwargs)
    return regression_metrics(result["predictions"], result["labels"]), result
