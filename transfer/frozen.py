"""The frozen-encoder modes (linear / mlp): every clip embedded once and cached, then a head per fold."""
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from datasets.cache import read_cache_entry
from datasets.transfer import VideoClips, digest, file_identity
from models import get_shallow_mlp_head, place_model
from utils.engine.loaders import batches, video_loader
from utils.engine.seed import set_seed
from utils.evaluation.inference import InferenceSettings, infer_videos
from utils.files.atomic import atomic_open, atomic_write_json
from utils.script.cli import on_interrupt
from utils.script.errors import BadInputError

from .experiment import build_encoder


def embed_videos(exp, checkpoint):
    """Clip embeddings (float32 [n_clips, d]) of every video, computed only where the cache has none.
    Returns (embeddings, number computed now)."""
    opt, videos, log = exp.opt, exp.videos, exp.log
    identity = {**checkpoint.identity, "model": opt.model, "depthwise": opt.depthwise, "amp": str(exp.amp)}
    folder = Path(opt.cache_dir) / f"{checkpoint.weights.kind}-{digest(identity, 20)}"
    if not (folder / "checkpoint.json").is_file():
        atomic_write_json({"spec": checkpoint.weights.spec, **identity}, folder / "checkpoint.json")
    paths = [folder / f"{digest([[file_identity(f) for f in v.files], exp.clip_spec.settings(v)])}.npy" for v in videos]
    cached = [read_cache_entry(path) for path in paths]
    missing = [i for i, entry in enumerate(cached) if entry is None]
    log.info(f"{checkpoint.label}: {len(videos) - len(missing)} of {len(videos)} videos' embeddings cached in "
             f"{folder}" + (f"; embedding {len(missing)}" if missing else ""))
    if missing:
        device = exp.dist.device
        model = place_model(build_encoder(checkpoint, opt), device, opt.channels_last)
        loader = video_loader(VideoClips([videos[i] for i in missing], exp.clip_spec, Path(opt.cache_dir) / "frames"),
                              opt.num_workers, device)
        start_time = time.perf_counter()
        # GPU: the clips of several videos per forward (--batch_size clips); CPU: one video at a time
        settings = InferenceSettings(exp.amp, opt.channels_last, max_clips=opt.batch_size)
        for done, (item, embeddings, _) in enumerate(infer_videos(model, batches(loader), device, settings), start=1):
            with atomic_open(paths[missing[item["index"]]], "wb", fsync=False) as f:  # a lost entry is redone
                np.save(f, embeddings)
            if done % 50 == 0 or done == len(missing):
                log.info(f"  {done}/{len(missing)} videos embedded "
                         f"({done / (time.perf_counter() - start_time):.2f} videos/s)")
        del model
    return [entry if entry is not None else np.load(path) for entry, path in zip(cached, paths)], len(missing)


def fit_head(features, targets, task, opt, device=torch.device("cpu")):
    """Train a linear or shallow-MLP head on standardised clip embeddings (no selection: --head_epochs), on
    `device`; returns the function that scores videos (lists of clip embeddings)."""
    if len(features) < 2:
        raise BadInputError(f"a fold has {len(features)} training clip(s); use fewer --folds")
    mean, std = features.mean(0), features.std(0) + 1e-6
    x = torch.from_numpy((features - mean) / std).float().to(device)
    regression = task == "regression"
    centre, scale = (float(np.mean(targets)), float(np.std(targets)) or 1.0) if regression else (0.0, 1.0)
    y = (torch.from_numpy((targets - centre) / scale).float()[:, None] if regression
         else torch.from_numpy(targets).long()).to(device)
    loss_fn = nn.L1Loss() if regression else nn.CrossEntropyLoss()
    set_seed(opt.seed)
    n_out = 1 if regression else 2
    head = nn.Linear(x.shape[1], n_out) if opt.mode == "linear" else get_shallow_mlp_head(x.shape[1], n_out)
    nn.init.zeros_((head if opt.mode == "linear" else head[-1]).bias)
    head = head.to(device)
    batch = min(opt.head_batch_size, len(x))
    steps_per_epoch = max(1, len(x) // batch)  # whole batches only (BatchNorm needs more than one clip)
    optimizer = torch.optim.AdamW(head.parameters(), lr=opt.head_lr, weight_decay=opt.head_weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, opt.head_epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(opt.seed)
    head.train()
    for _ in range(opt.head_epochs):
        order = torch.randperm(len(x), generator=generator).to(device)
        for step in range(steps_per_epoch):
            rows = order[step * batch:(step + 1) * batch]
            loss = loss_fn(head(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    if not math.isfinite(loss.item()):
        raise BadInputError(f"the head's loss became {loss.item()}; lower --head_lr")
    head.eval()

    @torch.no_grad()
    def video_outputs(clip_embeddings):
        """Per video: the mean over its clips of the EF, or of the class-1 probability."""
        out = []
        for clips in clip_embeddings:
            logits = head(torch.from_numpy((clips - mean) / std).float().to(device))
            out.append(float((logits[:, 0] * scale + centre).mean()) if regression
                       else float(torch.softmax(logits, dim=1)[:, 1].mean()))
        return np.array(out)

    return video_outputs


def frozen_outputs(exp, checkpoint):
    """(outputs per video, seconds per fold, videos embedded now) of a head per fold on frozen embeddings."""
    opt = exp.opt
    on_interrupt(lambda: f"interrupted; the embeddings computed so far are cached in {opt.cache_dir}: "
                         "rerun the same command to continue")
    embeddings, computed = embed_videos(exp, checkpoint)
    embedded = time.perf_counter()
    outputs, fold_seconds = np.full(len(exp.videos), np.nan), {}
    for fold in exp.folds:
        fold_start = time.perf_counter()
        train, test = exp.indices(fold.train), exp.indices(fold.test)
        features = np.concatenate([embeddings[i] for i in train])
        targets = np.concatenate([np.full(len(embeddings[i]), exp.labels[i]) for i in train])
        predict = fit_head(features, targets, exp.task, opt, exp.dist.device)
        outputs[test] = predict([embeddings[i] for i in test])
        fold_seconds[fold.index] = time.perf_counter() - fold_start
    exp.log.info(f"{checkpoint.label}: {opt.mode} heads of {len(exp.folds)} folds trained in "
                 f"{time.perf_counter() - embedded:.1f} s")
    return outputs, fold_seconds, computed
