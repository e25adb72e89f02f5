"""Make the familiarity reference of a checkpoint (scoring.familiarity) from an EchoNet-format folder: every train
and val video scored exactly as predict.py scores a file (the same clips, crop and frame rate), the train videos'
mean clip embeddings and true EFs kept, the val videos' distances to them setting the threshold.

    python -m scoring.reference --pretrained_weights save/<run>/best.pth --data_folder EchoNet-Dynamic \
        --model uniformer_small [--frames 36 --frequency 4 ...the clip options of predict.py] [--output FILE]

Writes <checkpoint>.reference.npz beside the checkpoint (or --output), where predict.py and the page find it.
Stage 2 (train_second_stage.py) makes it for its best.pth at the end (`write_reference`).
"""
import os
import time

import numpy as np

from datasets import EchoNet
from scoring.archive_clips import SCORED
from scoring.familiarity import content_identity, reference_path, save_reference
from scoring.options import add_scoring_args, result_settings
from scoring.scorer import embed_videos, load_scorer, video_clips
from utils.engine.amp import amp_dtype
from utils.engine.distributed import init_distributed
from utils.script.cli import run_main
from utils.script.errors import BadInputError
from utils.script.log import setup_logger
from utils.script.options import parser_with_defaults


def parse_option(argv=None):
    parser = parser_with_defaults("python -m scoring.reference", "Make the familiarity reference of a CoReEcho "
                                  "checkpoint from the train and val videos of an EchoNet-format folder")
    parser.add_argument("--pretrained_weights", type=str, required=True, help="the CoReEcho checkpoint (a path)")
    parser.add_argument("--data_folder", type=str, required=True,
                        help="EchoNet-format folder (FileList.csv, Videos/) with the train and val splits")
    parser.add_argument("--output", type=str, default=None, help="default: <checkpoint>.reference.npz beside it")
    parser.add_argument("--cache_dir", type=str, default=None, help="video header cache of the EchoNet reader")
    add_scoring_args(parser)  # the clips of predict.py: pass the same options as to predict.py
    parser.set_defaults(num_workers=None)
    return parser.parse_args(argv)


def split_videos(opt, split):
    """(video paths, true EF float64) of the `split` videos of opt.data_folder, in FileList order."""
    videos = EchoNet(opt.data_folder, split, opt.frames, opt.frequency, cache_dir=opt.cache_dir)
    return [str(videos.video_path(i)) for i in range(len(videos))], np.asarray(videos.labels, dtype=np.float64)


def video_embeddings(opt, scorer, paths, device, log):
    """(mean clip embedding float32 [n, d] of every scored video, which of `paths` were scored [len(paths)])."""
    model, regressor, amp = scorer
    embeddings, scored = [], []
    for item, _, clip_embeddings in embed_videos(opt, model, regressor, video_clips(opt, paths), device, amp):
        scored.append(item["status"] == SCORED)
        if scored[-1]:
            embeddings.append(clip_embeddings.mean(axis=0))
        else:
            log.warning(f"{item['path']}: {item['status']} ({item['error']}): left out of the reference")
    if not embeddings:
        raise BadInputError(f"{opt.data_folder}: no video of the split could be scored")
    return np.stack(embeddings).astype(np.float32), np.array(scored, dtype=bool)


def make_reference(opt, device, log):
    """Score the train and val videos of opt.data_folder and write the reference; returns it."""
    began = time.perf_counter()
    model, regressor, _ = load_scorer(opt, device)  # first: it fills --frames / --frequency from the checkpoint
    (train_paths, train_ef), (val_paths, _) = split_videos(opt, "train"), split_videos(opt, "val")
    scorer = (model, regressor, amp_dtype(opt.amp, device))
    log.info(f"familiarity reference of {opt.pretrained_weights}: scoring {len(train_paths)} train and "
             f"{len(val_paths)} val videos of {opt.data_folder}")
    train, scored = video_embeddings(opt, scorer, train_paths, device, log)
    val, _ = video_embeddings(opt, scorer, val_paths, device, log)
    meta = {**result_settings(opt), "pretrained_weights": os.path.abspath(opt.pretrained_weights),
            "checkpoint": content_identity(opt.pretrained_weights), "data_folder": os.path.abspath(opt.data_folder),
            "embedding": "mean clip embedding (encoder output), L2 distance as RnC"}
    path = opt.output or reference_path(opt.pretrained_weights)
    reference = save_reference(path, train, train_ef[scored], val, meta)
    log.info(f"Saved {path}: {len(train)} train videos, k {reference.meta['k']}, threshold {reference.threshold:.4g} "
             f"(the {reference.meta['quantile']:.0%} quantile of {len(val)} val distances) in "
             f"{time.perf_counter() - began:.1f} s")
    return reference


def write_reference(checkpoint, training_opt, device, log):
    """Stage 2's last step: the reference of its best.pth, from its own data folder and clip shape."""
    argv = ["--pretrained_weights", os.fspath(checkpoint), "--data_folder", training_opt.data_folder,
            "--model", training_opt.model, "--frames", str(training_opt.frames),
            "--frequency", str(training_opt.frequency), "--depthwise", training_opt.depthwise,
            "--num_workers", str(training_opt.num_workers)]
    if training_opt.cache_dir:
        argv += ["--cache_dir", training_opt.cache_dir]
    return make_reference(parse_option(argv), device, log)


def main(argv=None):
    opt = parse_option(argv)
    if not os.path.isfile(opt.pretrained_weights):
        raise BadInputError(f"--pretrained_weights {opt.pretrained_weights}: no such file")
    device = init_distributed(opt.device).device
    make_reference(opt, device, setup_logger(None))
    return 0


if __name__ == "__main__":
    run_main(main)
