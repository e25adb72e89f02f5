"""Transfer learning: how well do an encoder's representations carry over to CAMUS (EF) and HMC-QU (MI)?

Several encoders (--pretrained_weights: CoReEcho checkpoints of either stage, UniFormer Kinetics-400 weights, or
`none`) are evaluated side by side on the SAME patient-level folds of one data set (--dataset camus | hmcqu |
folder), with the encoder frozen (--mode linear / mlp) or fine-tuned end to end (--mode finetune):

    python transfer_learning.py --dataset camus --data_folder CAMUS --mode linear --model uniformer_small \\
        --pretrained_weights save/<stage-1 run>/best.pth uniformer_small_k400_16x8.pth none \\
        --frames 32 --output_dir results/camus_linear

The videos and their clips come from datasets.transfer, the folds from utils.evaluation.folds; the parts of the
run are in transfer/ (experiment set-up, frozen-encoder heads, fine-tuning folds, the report written to
--output_dir). The README's "Transfer learning" section is the manual.
"""
import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from datasets.clips import default_clip_stride
from datasets.sources import camus, hmcqu, label_folder
from datasets.sources.any_video import DEFAULT_FPS, parse_crop
from datasets.transfer import AUGMENTATIONS, NORMALISATIONS, ClipSpec, camus_videos, folder_videos, hmcqu_videos
from transfer.experiment import Experiment, name_checkpoints, read_checkpoint
from transfer.finetune import finetuned_outputs
from transfer.frozen import frozen_outputs
from transfer.report import MODES, baseline_report, checkpoint_report, write_reports
from utils.engine.amp import amp_dtype
from utils.engine.distributed import barrier, cleanup, init_distributed
from utils.evaluation.folds import CAMUS_FOLDS, HMCQU_FOLDS, patient_folds
from utils.files.atomic import check_writable_folder
from utils.script.cli import run_main
from utils.script.errors import BadInputError
from utils.script.log import FILE_ONLY, setup_logger
from models.options import add_model_args
from utils.script.options import parser_with_defaults
from utils.script.validators import non_negative_float, non_negative_int, positive_float, positive_int

DEFAULT_FOLDS = {"camus": CAMUS_FOLDS, "hmcqu": HMCQU_FOLDS, "folder": 5}


def fraction(text):
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def add_data_options(parser):
    """How each data set's videos are read, labelled and cut into clips."""
    parser.add_argument("--clip_stride", type=positive_int, default=None,
                        help="hmcqu / folder: frames between clip starts; None: frames * frequency // 2")
    parser.add_argument("--crop", default="auto",
                        help="hmcqu / folder: auto = the moving sector, none = whole frame, or x,y,w,h")
    parser.add_argument("--target_fps", type=float, default=DEFAULT_FPS,
                        help="hmcqu / folder: resample videos to this frame rate (0 keeps the source rate)")
    parser.add_argument("--views", default="4CH",
                        help="camus: 4CH (one sequence per patient, as the released code), 2CH or both")
    parser.add_argument("--qualities", nargs="+", default=None, metavar="QUALITY",
                        help="camus: keep only views of these image qualities (Good Medium Poor); None: all")
    parser.add_argument("--hmcqu_view", default="A4C", choices=(*hmcqu.VIEWS, "both"),
                        help="hmcqu: the recordings of this view (both: A4C and A2C, a patient's views in one fold)")
    parser.add_argument("--hmcqu_frames", default="cycle", choices=("cycle", "all"),
                        help="hmcqu: clips over the annotated cardiac cycle (Reference Frame -> End of Cycle, as "
                             "the published benchmarks) or over the whole recording")
    parser.add_argument("--labels_file", default=None,
                        help="hmcqu: the label sheet (None: DATA/<view>.xlsx or .csv); folder: the CSV in the "
                             "folder (None: labels.csv)")
    parser.add_argument("--video_column", default=hmcqu.DEFAULT_VIDEO_COLUMN,
                        help="hmcqu: the sheet's column of video names")
    parser.add_argument("--label_columns", nargs="+", default=None, metavar="COLUMN",
                        help="hmcqu: the segment columns (MI = any of them MI or 1); None: every SEG<n> column")
    parser.add_argument("--normalisation", default="auto", choices=("auto", *NORMALISATIONS),
                        help="echonet: EchoNet mean / std (what CoReEcho's encoder was trained on); camus: the "
                             "released CAMUS fine-tuning mean 40.94405 / std 54.723774; auto: camus for --dataset "
                             "camus --mode finetune, else echonet")


def checked(parser, opt):
    """Options that argparse cannot check alone, and the defaults that depend on --dataset and --mode."""
    fixed = {"camus": "regression", "hmcqu": "classification"}.get(opt.dataset)
    if fixed and opt.task not in ("auto", fixed):
        parser.error(f"--dataset {opt.dataset} is {fixed}; --task {opt.task} applies to --dataset folder")
    if opt.target_fps < 0 or not math.isfinite(opt.target_fps):
        parser.error(f"--target_fps must be >= 0, got {opt.target_fps}")
    if opt.hmcqu_view == "both" and opt.labels_file:
        parser.error("--labels_file names one sheet: use it with --hmcqu_view A4C or A2C")
    released = opt.dataset == "camus" and opt.mode == "finetune"  # the released CAMUS fine-tuning protocol
    opt.normalisation = {"auto": "camus" if released else "echonet"}.get(opt.normalisation, opt.normalisation)
    opt.aug = {"auto": "affine" if released else "none"}.get(opt.aug, opt.aug)
    opt.crop = parse_crop(opt.crop)
    opt.clip_stride = opt.clip_stride or default_clip_stride(opt.frames, opt.frequency)
    if opt.dataset == "camus":
        opt.views = camus.parse_views(opt.views)
        opt.qualities = None if opt.qualities is None else sorted(camus.parse_qualities(opt.qualities))
    return opt


def parse_option(argv=None):
    parser = parser_with_defaults("transfer_learning.py", "Compare encoders by transfer learning on CAMUS (EF), "
                                  "HMC-QU (MI) or a labelled video folder, on the same patient-level folds")
    parser.add_argument("--dataset", required=True, choices=("camus", "hmcqu", "folder"))
    parser.add_argument("--data_folder", required=True,
                        help="camus: the folder holding database_nifti/ or patientNNNN/; hmcqu: the unpacked "
                             "release (A4C.xlsx or A4C.csv, HMC-QU/A4C/); folder: labels.csv and the videos")
    parser.add_argument("--pretrained_weights", nargs="+", required=True, metavar="CKPT",
                        help="CoReEcho checkpoints, UniFormer Kinetics-400 state dicts and/or 'none' (random "
                             "weights); paths or hf://OWNER/REPO/FILE")
    parser.add_argument("--mode", default="linear", choices=tuple(MODES),
                        help="linear / mlp: a head on frozen, cached embeddings; finetune: encoder + head")
    parser.add_argument("--task", default="auto", choices=("auto", "regression", "classification"),
                        help="auto: camus regression, hmcqu classification, folder classification when every "
                             "label is 0 or 1")
    parser.add_argument("--output_dir", default="transfer_results")
    parser.add_argument("--cache_dir", default=None,
                        help="embeddings and decoded videos are kept here; None: OUTPUT_DIR/embedding_cache")
    parser.add_argument("--folds", type=positive_int, default=None,
                        help="number of folds; None: camus 10, hmcqu 5, folder 5")
    parser.add_argument("--shuffle_folds", action="store_true",
                        help="contiguous folds (camus, folder regression) from the patients shuffled by --seed "
                             "instead of sorted (the CAMUS protocol)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="stratified folds, random weights of 'none', head initialisation and training order")
    add_model_args(parser, frames=32, frequency=4)  # 32 frames: the CAMUS clips of the released preprocessing
    for action in parser._actions:
        if action.dest in ("frames", "frequency"):
            action.help = {"frames": "frames per clip (CAMUS: its ED->ES half cycle resampled to this many)",
                           "frequency": "sampling period between frames of hmcqu / folder clips (not used for "
                                        "CAMUS)"}[action.dest]
    # --model: the checkpoints' (transfer.experiment.read_checkpoint); the clip shape stays the dataset's
    parser.set_defaults(model=None)
    add_data_options(parser)
    parser.add_argument("--batch_size", type=positive_int, default=16,
                        help="finetune: videos per step (per process); linear / mlp: clips per GPU forward")
    parser.add_argument("--head_epochs", type=positive_int, default=100, help="linear / mlp: epochs per fold")
    parser.add_argument("--head_lr", type=positive_float, default=1e-3, help="linear / mlp: peak learning rate")
    parser.add_argument("--head_weight_decay", type=non_negative_float, default=1e-4,
                        help="linear / mlp: AdamW weight decay (multiplied by the learning rate), the head's only "
                             "regulariser; with few training videos per embedding dimension 1-10 helps")
    parser.add_argument("--head_batch_size", type=positive_int, default=64, help="linear / mlp: clips per step")
    parser.add_argument("--epochs", type=positive_int, default=10, help="finetune: passes over the training videos")
    parser.add_argument("--learning_rate", type=positive_float, default=1e-4, help="finetune: AdamW, encoder and head")
    parser.add_argument("--weight_decay", type=non_negative_float, default=1e-4, help="finetune")
    parser.add_argument("--aug", nargs="?", const="shift", default="auto", choices=("auto", *AUGMENTATIONS),
                        help="finetune: training-clip augmentation: shift (also plain --aug) = a random 6-pixel "
                             "shift, affine = the released CAMUS one (rotation +-10 deg, translation +-10 %%, "
                             "scale 0.8-1.1); auto: affine for --dataset camus, else none")
    parser.add_argument("--finetune_val_fraction", type=fraction, default=0.1,
                        help="finetune: share of each fold's training patients that chooses best.pth")
    parser.add_argument("--resume", action="store_true",
                        help="finetune: continue every unfinished fold from its last.pth, keep finished folds")
    parser.add_argument("--print_freq", type=positive_int, default=10, help="finetune: log every N steps")
    parser.add_argument("--prefetch_factor", type=positive_int, default=2, help="finetune: batches per worker")
    parser.add_argument("--sync_bn", action="store_true", help="finetune: SyncBatchNorm under torchrun")
    parser.add_argument("--deterministic", action="store_true", help="cuDNN deterministic algorithms")
    return checked(parser, parser.parse_args(argv))


# ---------------------------------------------------------------- videos, labels, patients, folds

def list_videos(opt, log):
    if opt.dataset == "camus":
        videos = camus_videos(opt.data_folder, opt.views, opt.qualities)
        if not videos:
            raise BadInputError(f"{opt.data_folder}: no CAMUS view of the qualities {', '.join(opt.qualities or [])}")
        return videos
    if opt.dataset == "folder":
        return folder_videos(opt.data_folder, opt.labels_file or label_folder.LABELS_FILE)
    views = hmcqu.VIEWS if opt.hmcqu_view == "both" else (opt.hmcqu_view,)
    videos = []
    for view in views:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            listing = hmcqu.list_recordings(opt.data_folder, view=view, labels_file=opt.labels_file,
                                            video_column=opt.video_column, label_columns=opt.label_columns,
                                            cycle=opt.hmcqu_frames == "cycle")
        for warning in caught:
            log.warning(f"WARNING: {warning.message}")
        videos += hmcqu_videos(listing)
    if not videos:
        raise BadInputError(f"{opt.data_folder}: no HMC-QU {' or '.join(views)} recording has both a video and a "
                            "row in the label sheet")
    return videos


def decide_task(opt, videos):
    labels = np.array([v.label for v in videos])
    binary = bool(np.isin(labels, (0.0, 1.0)).all())
    task = {"camus": "regression", "hmcqu": "classification"}.get(opt.dataset, opt.task)
    if task == "auto":
        task = "classification" if binary else "regression"
    if task == "classification":
        if not binary:
            bad = next(v for v in videos if v.label not in (0.0, 1.0))
            raise BadInputError(f"{opt.data_folder}: classification needs labels 0 or 1; {bad.name} has {bad.label:g}")
        if len(set(labels.tolist())) < 2:
            raise BadInputError(f"{opt.data_folder}: every video has label {labels[0]:g}; classification needs both "
                                "classes")
    return task


def make_folds(opt, videos, task):
    n_folds = opt.folds or DEFAULT_FOLDS[opt.dataset]
    seed = opt.seed if task == "classification" or opt.shuffle_folds else None
    try:
        return patient_folds([v.patient for v in videos], [v.label for v in videos], n_folds,
                             stratified=task == "classification", seed=seed)
    except ValueError as e:
        raise BadInputError(f"--folds {n_folds}: {e}") from None


# ---------------------------------------------------------------- the run

def start(opt, argv, dist):
    """Inputs first: a wrong folder, file or checkpoint fails here, before anything is written."""
    output_dir = Path(opt.output_dir)
    opt.cache_dir = str(opt.cache_dir or output_dir / "embedding_cache")
    if dist.is_main:
        check_writable_folder(output_dir)
        check_writable_folder(opt.cache_dir)
    barrier()
    log = setup_logger(output_dir / "transfer.log", dist.is_main)
    videos = list_videos(opt, log)
    task = decide_task(opt, videos)
    clip_spec = ClipSpec(opt.frames, opt.frequency, opt.clip_stride, opt.crop, opt.target_fps, opt.seed, opt.aug,
                         opt.normalisation)
    exp = Experiment(opt, log, dist, videos, task, make_folds(opt, videos, task), clip_spec,
                     amp_dtype(opt.amp, dist.device))
    checkpoints = name_checkpoints([read_checkpoint(given, opt) for given in opt.pretrained_weights])
    opt.model = opt.model or "uniformer_small"  # only random weights: the paper's model
    log.info(f"transfer_learning.py {' '.join(sys.argv[1:] if argv is None else map(str, argv))}")
    log.info("Options:\n" + "\n".join(f"  {key}: {value}" for key, value in vars(opt).items()), extra=FILE_ONLY)
    log.info(exp.summary() + f"; mode {opt.mode}, {opt.model}, clips of {opt.frames} frames"
             + ("" if opt.dataset == "camus" else f" every {opt.frequency}, a clip every {opt.clip_stride} frames")
             + (f" over the {'annotated cycle' if opt.hmcqu_frames == 'cycle' else 'whole recording'}"
                if opt.dataset == "hmcqu" else "")
             + f", {opt.normalisation} normalisation" + (f", {opt.aug} augmentation" if opt.mode == "finetune" else "")
             + f"; device {dist.device}, AMP {exp.amp or 'off (fp32)'}")
    for c in checkpoints:
        log.info(f"  {c.label}: {c.weights.description}"
                 + (f" ({c.weights.path})" if c.weights.path and c.weights.path != c.weights.spec else ""))
    return exp, checkpoints


def main(argv=None):
    opt = parse_option(argv)
    started = time.perf_counter()
    dist = init_distributed(opt.device)
    if dist.enabled and opt.mode != "finetune":
        raise BadInputError(f"--mode {opt.mode} runs as a single process (each video is embedded once); "
                            "torchrun is for --mode finetune")
    exp, checkpoints = start(opt, argv, dist)
    reports, all_outputs = [], []
    for checkpoint in checkpoints:
        began = time.perf_counter()
        if opt.mode == "finetune":
            (outputs, fold_seconds), computed = finetuned_outputs(exp, checkpoint), None
        else:
            outputs, fold_seconds, computed = frozen_outputs(exp, checkpoint)
        reports.append(checkpoint_report(exp, checkpoint, outputs, fold_seconds, computed,
                                         time.perf_counter() - began))
        all_outputs.append(outputs)
    baseline = baseline_report(exp)
    cleanup()
    if not dist.is_main:
        return
    note, table = write_reports(exp, checkpoints, reports, all_outputs, baseline)
    log = exp.log
    log.info("Time: " + ", ".join(f"{r['label']} {r['seconds']:.1f} s" for r in reports)
             + f"; total {time.perf_counter() - started:.1f} s")
    log.info(f"Saved in {Path(opt.output_dir)}: results.json, summary.csv, summary.md, predictions.csv, plots/, "
             "transfer.log")
    log.info(note + "\n" + table, extra=FILE_ONLY)
    print(f"\n{note}\n\n{table}\n", flush=True)


if __name__ == "__main__":
    run_main(main)
