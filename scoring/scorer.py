"""The one scoring path of predict.py and the web page: the model of a checkpoint (`load_scorer`), its familiarity
reference (`run_reference`), the clips of files (`video_clips`), their EFs and embeddings (`embed_videos`) and
their CSV rows with the familiarity cells (`scored_rows`)."""
import os

import numpy as np

from datasets.clips import default_clip_stride
from datasets.sources.any_video import parse_crop
from models import build_model, place_model, read_weights, require_kind
from models.settings import fill_options
from utils.engine.loaders import video_loader
from utils.evaluation.inference import InferenceSettings, infer_videos

from .archive_clips import ArchiveClips, ShortLoopSettings
from .familiarity import familiarity_row, find_reference
from .rows import csv_row

PREVIEW_FRAMES = 4  # frames shown under the EF curve of predict.py --plot and of the page


def default_workers() -> int:
    """The CPUs this process may use, divided among the processes torchrun starts on this machine."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))


def load_scorer(opt, device):
    """(model, regressor, Weights) of opt.pretrained_weights (a CoReEcho checkpoint), on `device`, in eval mode;
    opt.model / frames / frequency left None are filled from the checkpoint first (models.settings)."""
    weights = read_weights(opt.pretrained_weights)
    require_kind(weights, ("coreecho",))
    fill_options(opt, weights)
    model, regressor, weights = build_model(opt.model, weights, depthwise=opt.depthwise)
    return place_model(model, device, opt.channels_last), place_model(regressor, device), weights


def run_reference(opt, weights):
    """(Reference or None, [(log level, line)]) of this run: opt.reference (--reference FILE|none), by default the
    file beside the checkpoint as read (weights.path: the downloaded file of hf://), checked against its clips."""
    return find_reference(opt.reference, weights.path, (opt.frames, opt.frequency))


def video_clips(opt, paths, preview=0):
    """ArchiveClips of `paths` as the options of scoring.options.add_scoring_args say (each item scored,
    skipped or failed), with `preview` frames of each video for a figure."""
    stride = opt.clip_stride or default_clip_stride(opt.frames, opt.frequency)
    loops = ShortLoopSettings(opt.short_loops, opt.min_frames, opt.min_seconds)
    return ArchiveClips(paths, opt.frames, opt.frequency, stride, parse_crop(opt.crop), opt.target_fps,
                        preview=preview, rules=loops)


def embed_videos(opt, model, regressor, dataset, device, amp):
    """(item, clip EF float64 [n_clips], clip embeddings float32 [n_clips, d]) of every video of `dataset`, in
    order. GPU: the clips of several videos per forward (opt.batch_size clips); CPU: one at a time.
    opt.num_workers None: default_workers()."""
    workers = default_workers() if opt.num_workers is None else opt.num_workers
    # results do not depend on the number of workers: nothing is random and the order is kept
    loader = video_loader(dataset, workers, device)
    settings = InferenceSettings(amp, opt.channels_last, max_clips=opt.batch_size)
    for item, embeddings, clip_ef in infer_videos(model, loader, device, settings, regressor):
        yield item, clip_ef.astype(np.float64), embeddings


def scored_rows(opt, model, regressor, dataset, device, amp, reference):
    """(item, clip EF float64 [n_clips], CSV row) of every video of `dataset`, in order: the row of
    scoring.rows.csv_row with the familiarity cells of `reference` (none without one)."""
    for item, clip_ef, clip_embeddings in embed_videos(opt, model, regressor, dataset, device, amp):
        row = csv_row(item, clip_ef)
        row.update(familiarity_row(reference, row["status"], clip_embeddings))
        yield item, clip_ef, row
