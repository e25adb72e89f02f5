"""Transfer learning: how well do an encoder's representations carry over to CAMUS (EF) and HMC-QU (MI)?

Several encoders are evaluated side by side on the SAME patient-level folds:

    python transfer_learning.py --dataset camus --data_folder CAMUS --mode linear --model uniformer_small \\
        --pretrained_weights save/<stage-1 run>/best.pth uniformer_small_k400_16x8.pth none \\
        --frames 32 --output_dir results/camus_linear

--pretrained_weights takes any number of: a CoReEcho checkpoint of either stage ('model' + 'regressor', the
released format), a UniFormer Kinetics-400 state dict (400-class head), or `none` (random weights, seeded by
--seed); local paths or hf://OWNER/REPO/FILE.

Data (--dataset):
- camus: datasets.sources.camus (--views 4CH / 2CH / both, default both; every view is one video of its patient). A
  video's clip goes from ED to ES, resampled to --frames (--frequency is not used), 112x112.
- hmcqu: datasets.sources.hmcqu (A4C recordings and the sheet; MI = any segment 1).
- folder: datasets.sources.label_folder (labels.csv with `file,label`, optionally `patient`): an EF in % means
  regression, labels that are all 0 / 1 classification (--task overrides).
HMC-QU and folder videos go through datasets.sources.any_video.load_echo_video (sector crop, --target_fps 50,
112x112), then the EchoNet clip protocol: clips of --frames frames every --frequency-th frame on the grid of
datasets.clip_grid.clip_grid over the WHOLE video (a clip every --clip_stride frames plus the last possible
start), normalised as the EchoNet datasets do. A video's output is the mean over its clips (of the EF, or of
the MI probability).

Folds (utils.evaluation.folds) split patients, never videos. CAMUS: the released protocol, patients sorted, fold k
validates on the k-th block (10 folds of 50 for the 500 patients). HMC-QU: stratified by MI, shuffled by
--seed (5 folds). folder: stratified for classes, else contiguous. --folds N overrides the count,
--shuffle_folds shuffles the contiguous blocks by --seed. A fold's validation patients are its test set.

Modes:
- linear / mlp: the encoder is frozen. Every clip is embedded once and cached (--cache_dir, default
  OUTPUT_DIR/embedding_cache; keyed by the checkpoint file's path, size and modification time, the video
  file's path, size and modification time, and the clip settings, so a change of any of them recomputes).
  Per fold a head is trained on the standardised clip embeddings of the training videos for
  --head_epochs epochs (AdamW, cosine schedule, no selection on the test fold): nn.Linear (linear) or
  models.get_shallow_mlp_head (mlp). Regression: L1 on the EF (standardised by the training fold);
  classification: cross-entropy over two logits, the MI probability is the softmax of the second.
- finetune: encoder + shallow MLP head trained end to end per fold (L1 / cross-entropy) through utils.training.run.Run:
  --amp, torchrun (DDP on every rank), --resume, a folder per fold with best.pth / last.pth. best.pth is chosen
  on an inner validation split of the fold's TRAINING patients (--finetune_val_fraction; MAE, or
  cross-entropy for classes), then scored once on the fold's test patients.

Writes to --output_dir: results.json (settings, folds, every checkpoint's per-fold metrics, means, standard
deviations and pooled metrics, a training-mean / majority-class baseline), summary.csv and summary.md (mean ±
SD over folds), predictions.csv (checkpoint, fold, video, patient, label, prediction, probability),
plots/ (per checkpoint: predicted-vs-true EF with Bland-Altman, or ROC curves per fold and pooled) and
transfer.log. The Markdown table is printed at the end.
"""
import argparse
import hashlib
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from sklearn.metrics import roc_auc_score, roc_curve
from torch.utils.data import DataLoader

from datasets.sources import camus, hmcqu, label_folder
from datasets.sources.any_video import DEFAULT_FPS, load_echo_video, parse_crop
from datasets.cache import read_cache_entry
from datasets.clip_grid import clip_grid, cut_clips, default_clip_stride, keep_item
from datasets.echonet import PAD, num_starts
from datasets.video import SIZE
from models import build_model, get_feature_extractor, get_shallow_mlp_head
from utils.files.checkpoint import load_checkpoint, load_state_dict_strict, strip_module_prefix, unwrap
from utils.script.cli import on_interrupt, run_main
from utils.engine.distributed import barrier, cleanup, init_distributed, wrap_ddp
from utils.script.errors import BadInputError
from utils.evaluation.inference import infer_videos, predict_variable_clips
from utils.evaluation.folds import CAMUS_FOLDS, HMCQU_FOLDS, contiguous_folds, sample_indices, stratified_folds
from utils.files.atomic import atomic_open, atomic_write_json, atomic_write_text, check_writable_folder
from utils.script.log import FILE_ONLY, setup_logger
from utils.evaluation.metrics import regression_metrics
from utils.script.options import (add_model_args, non_negative_float, non_negative_int, parser_with_defaults, positive_float,
                           positive_int)
from utils.pictures.plots import plt, prediction_figure, save_figure
from utils.training.run import Run
from utils.engine.amp import amp_dtype, autocast, grad_scaler, prepare_batch
from utils.engine.loaders import batches
from utils.engine.seed import set_seed
from utils.files.weights import resolve_weights

DEFAULT_FOLDS = {"camus": CAMUS_FOLDS, "hmcqu": HMCQU_FOLDS, "folder": 5}
KINETICS_CLASSES = 400
KIND_NAMES = {"coreecho": "CoReEcho", "kinetics400": "Kinetics-400", "none": "random init"}
# (key, table header, scale, decimals) of the summary table
TABLE_METRICS = {
    "regression": [("mae", "MAE ↓", 1, 2), ("rmse", "RMSE ↓", 1, 2), ("r2", "R² (%) ↑", 100, 1),
                   ("pearson_r", "Pearson r ↑", 1, 3)],
    "classification": [("accuracy", "Accuracy (%) ↑", 100, 1), ("sensitivity", "Sensitivity (%) ↑", 100, 1),
                       ("specificity", "Specificity (%) ↑", 100, 1), ("f1", "F1 (%) ↑", 100, 1),
                       ("auroc", "AUROC ↑", 1, 3)],
}
PREDICTION_COLUMNS = ["checkpoint", "fold", "video", "patient", "label", "prediction", "probability"]


def fraction(text):
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


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
    parser.add_argument("--mode", default="linear", choices=("linear", "mlp", "finetune"),
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
    parser.add_argument("--clip_stride", type=positive_int, default=None,
                        help="hmcqu / folder: frames between clip starts; None: frames * frequency // 2")
    parser.add_argument("--crop", default="auto",
                        help="hmcqu / folder: auto = the moving sector, none = whole frame, or x,y,w,h")
    parser.add_argument("--target_fps", type=float, default=DEFAULT_FPS,
                        help="hmcqu / folder: resample videos to this frame rate (0 keeps the source rate)")
    parser.add_argument("--views", default="both", help="camus: 4CH, 2CH or both")
    parser.add_argument("--qualities", nargs="+", default=None, metavar="QUALITY",
                        help="camus: keep only views of these image qualities (Good Medium Poor); None: all")
    parser.add_argument("--hmcqu_view", default="A4C", choices=hmcqu.VIEWS)
    parser.add_argument("--labels_file", default=None,
                        help="hmcqu: the label sheet (None: DATA/A4C.xlsx or .csv); folder: the CSV in the "
                             "folder (None: labels.csv)")
    parser.add_argument("--video_column", default=hmcqu.DEFAULT_VIDEO_COLUMN,
                        help="hmcqu: the sheet's column of video names")
    parser.add_argument("--label_columns", nargs="+", default=None, metavar="COLUMN",
                        help="hmcqu: the segment columns (MI = any of them 1); None: every SEG<n> column")
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
    parser.add_argument("--aug", action="store_true", help="finetune: random 6-pixel shift of every training clip")
    parser.add_argument("--finetune_val_fraction", type=fraction, default=0.1,
                        help="finetune: share of each fold's training patients that chooses best.pth")
    parser.add_argument("--resume", action="store_true",
                        help="finetune: continue every unfinished fold from its last.pth, keep finished folds")
    parser.add_argument("--print_freq", type=positive_int, default=10, help="finetune: log every N steps")
    parser.add_argument("--prefetch_factor", type=positive_int, default=2, help="finetune: batches per worker")
    parser.add_argument("--sync_bn", action="store_true", help="finetune: SyncBatchNorm under torchrun")
    parser.add_argument("--deterministic", action="store_true", help="cuDNN deterministic algorithms")
    opt = parser.parse_args(argv)
    fixed = {"camus": "regression", "hmcqu": "classification"}.get(opt.dataset)
    if fixed and opt.task not in ("auto", fixed):
        parser.error(f"--dataset {opt.dataset} is {fixed}; --task {opt.task} applies to --dataset folder")
    if opt.target_fps < 0 or not math.isfinite(opt.target_fps):
        parser.error(f"--target_fps must be >= 0, got {opt.target_fps}")
    opt.crop = parse_crop(opt.crop)
    opt.clip_stride = opt.clip_stride or default_clip_stride(opt.frames, opt.frequency)
    if opt.dataset == "camus":
        opt.views = camus.parse_views(opt.views)
        opt.qualities = None if opt.qualities is None else sorted(camus.parse_qualities(opt.qualities))
    return opt


# ---------------------------------------------------------------- videos, labels, patients, folds

@dataclass(frozen=True)
class Video:
    name: str
    patient: str
    label: float
    path: Path
    files: tuple  # files whose change changes the clips (CAMUS: the sequence and its cfg)
    camus: object = None  # datasets.sources.camus.CamusSample for CAMUS videos


def _folder_patients(opt, rows):
    """The optional `patient` column of the folder's labels CSV (any case); the file name otherwise."""
    path = Path(opt.data_folder) / (opt.labels_file or label_folder.LABELS_FILE)
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    column = {str(c).strip().lower(): c for c in table.columns}.get("patient")
    if column is None:
        return [row.name for row in rows]
    patients = []
    for row in rows:
        patient = str(table[column].iloc[row.row - 1]).strip()
        if not patient:
            raise BadInputError(f"{path} data row {row.row} ({row.name}): empty patient")
        patients.append(patient)
    return patients


def list_videos(opt, log):
    if opt.dataset == "camus":
        samples = camus.list_samples(opt.data_folder, views=opt.views, qualities=opt.qualities)
        if not samples:
            raise BadInputError(f"{opt.data_folder}: no CAMUS view of the qualities {', '.join(opt.qualities or [])}")
        return [Video(s.name, s.patient, s.ef, s.path, (s.path, s.cfg), s) for s in samples]
    if opt.dataset == "hmcqu":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            listing = hmcqu.list_recordings(opt.data_folder, view=opt.hmcqu_view, labels_file=opt.labels_file,
                                            video_column=opt.video_column, label_columns=opt.label_columns)
        for warning in caught:
            log.warning(f"WARNING: {warning.message}")
        if not listing.recordings:
            raise BadInputError(f"{opt.data_folder}: no HMC-QU {opt.hmcqu_view} recording has both a video and a "
                                "row in the label sheet")
        return [Video(r.recording, r.patient, float(r.label), r.path, (r.path,)) for r in listing.recordings]
    rows = label_folder.read_label_folder(opt.data_folder, opt.labels_file or label_folder.LABELS_FILE)
    return [Video(row.name, patient, row.label, row.path, (row.path,))
            for row, patient in zip(rows, _folder_patients(opt, rows))]


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
    patients, labels = [v.patient for v in videos], [v.label for v in videos]
    n_folds = opt.folds or DEFAULT_FOLDS[opt.dataset]
    try:
        if task == "classification":
            return stratified_folds(patients, labels, n_folds, seed=opt.seed)
        return contiguous_folds(patients, n_folds, seed=opt.seed if opt.shuffle_folds else None)
    except ValueError as e:
        raise BadInputError(f"--folds {n_folds}: {e}") from None


# ---------------------------------------------------------------- frames and clips

def file_identity(path):
    """[real path, size, modification time in ns]: changes whenever the file is replaced or touched."""
    stat = os.stat(path)
    return [os.path.realpath(path), stat.st_size, stat.st_mtime_ns]


def digest(obj, length=24):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:length]


def clip_settings(opt):
    """What, besides the files, decides a video's clips."""
    if opt.dataset == "camus":
        return {"dataset": "camus", "frames": opt.frames}
    return {"decoder": "any_video", "frames": opt.frames, "frequency": opt.frequency, "clip_stride": opt.clip_stride,
            "crop": list(opt.crop) if isinstance(opt.crop, tuple) else opt.crop, "target_fps": opt.target_fps}


def decoded_frames(video, opt, frame_cache):
    """uint8 RGB [F, 112, 112, 3]: CAMUS's ED->ES clip (F = --frames), or a whole decoded video (kept in
    frame_cache/, grey as one channel, so fine-tune epochs and further checkpoints skip decoding)."""
    if video.camus is not None:
        return np.repeat(camus.load_frames(video.camus, opt.frames)[..., None], 3, axis=-1)
    decoding = {"crop": list(opt.crop) if isinstance(opt.crop, tuple) else opt.crop, "target_fps": opt.target_fps}
    path = Path(frame_cache) / f"{digest([file_identity(video.path), decoding])}.npy"
    stored = read_cache_entry(path)
    if stored is None:
        frames, _ = load_echo_video(video.path, opt.crop, opt.target_fps)
        grey = (frames[..., :1] == frames).all()
        stored = frames[..., :1] if grey else frames
        with atomic_open(path, "wb", fsync=False) as f:  # a lost entry is decoded again
            np.save(f, stored)
    return np.repeat(stored, 3, axis=-1) if stored.shape[-1] == 1 else stored


def clip_protocol(video, n_frames, opt):
    """(starts, frequency) of a video's clips: CAMUS its one resampled clip, others the whole-video grid."""
    if video.camus is not None:
        return np.zeros(1, np.int64), 1
    return clip_grid(n_frames, opt.frames, opt.frequency, opt.clip_stride), opt.frequency


class VideoClips(torch.utils.data.Dataset):
    """Every clip of each video: dict(index, name, image float32 [n_clips, 3, frames, 112, 112], starts, label)."""

    def __init__(self, videos, opt, frame_cache):
        self.videos, self.opt, self.frame_cache = list(videos), opt, frame_cache

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, index):
        video = self.videos[index]
        frames = decoded_frames(video, self.opt, self.frame_cache)
        starts, frequency = clip_protocol(video, len(frames), self.opt)
        return {"index": index, "name": video.name, "image": cut_clips(frames, starts, self.opt.frames, frequency),
                "starts": torch.from_numpy(starts), "label": torch.tensor([video.label], dtype=torch.float32)}


class TrainClips(VideoClips):
    """One clip per video at a random start (and with --aug a random 6-pixel shift, as the EchoNet training
    clips), drawn from (seed, epoch, index): the same for any number of workers or processes."""

    def __init__(self, videos, opt, frame_cache):
        super().__init__(videos, opt, frame_cache)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # seen by persistent workers

    def set_epoch(self, epoch):
        self._epoch.fill_(int(epoch))

    def __getitem__(self, index):
        video = self.videos[index]
        frames = decoded_frames(video, self.opt, self.frame_cache)
        _, frequency = clip_protocol(video, len(frames), self.opt)
        seed = np.random.SeedSequence([self.opt.seed, int(self._epoch), index]).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(seed))
        start = int(torch.randint(num_starts(len(frames), self.opt.frames, frequency), (1,), generator=generator))
        if self.opt.aug:  # zero-pad by PAD pixels and crop 112x112 at one offset for all frames
            top, left = torch.randint(2 * PAD + 1, (2,), generator=generator).tolist()
            padded = np.pad(frames, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))
            frames = padded[:, top:top + SIZE, left:left + SIZE]
        return {"name": video.name, "image": cut_clips(frames, [start], self.opt.frames, frequency)[0],
                "label": torch.tensor([video.label], dtype=torch.float32)}


# ---------------------------------------------------------------- checkpoints

@dataclass
class Checkpoint:
    spec: str  # as given
    path: str  # resolved local file ('' for none)
    kind: str  # coreecho, kinetics400 or none
    epoch: object
    identity: dict
    label: str = ""
    folder: str = ""  # name of its folders under OUTPUT_DIR

    @property
    def description(self):
        epoch = f" (epoch {self.epoch})" if self.kind == "coreecho" and self.epoch is not None else ""
        return KIND_NAMES[self.kind] + epoch


def _state_dict_of(obj):
    for key in ("model", "state_dict", "model_state"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            return obj[key]
    return obj


def inspect_checkpoint(spec, opt, shapes):
    """Resolve and read a --pretrained_weights entry and tell its kind; unknown kinds, and weights that do not fit
    --model (`shapes`: its encoder's names -> shapes, head aside), are one-line errors."""
    if spec.strip().lower() == "none":
        return Checkpoint(spec, "", "none", None, {"kind": "none", "seed": opt.seed, "torch": torch.__version__})
    path = resolve_weights(spec)
    content = load_checkpoint(path)
    if isinstance(content, Mapping) and isinstance(content.get("model"), Mapping) \
            and isinstance(content.get("regressor"), Mapping):
        kind, epoch = "coreecho", content.get("epoch")
    else:
        state = _state_dict_of(content)
        head = strip_module_prefix(state).get("head.weight") if isinstance(state, Mapping) else None
        if not (isinstance(head, torch.Tensor) and head.ndim == 2 and head.shape[0] == KINETICS_CLASSES):
            raise BadInputError(f"{spec}: unknown checkpoint kind: expected a CoReEcho checkpoint ('model' and "
                                "'regressor' entries), a UniFormer Kinetics-400 state dict (a 400-class "
                                "'head.weight'), or 'none' for random weights")
        kind, epoch = "kinetics400", None
    epoch = int(epoch) if isinstance(epoch, (int, torch.Tensor)) else epoch
    checkpoint = Checkpoint(spec, path, kind, epoch, {"kind": kind, "file": file_identity(path)})
    encoder = strip_module_prefix(content["model"] if kind == "coreecho" else _state_dict_of(content))
    if {k: tuple(v.shape) for k, v in encoder.items() if not k.startswith("head.")} != shapes:
        build_encoder(checkpoint, opt)  # raises the loader's one-line error (keys, shapes, the --model that fits)
    return checkpoint


def name_checkpoints(checkpoints):
    """Short unique labels (file names, or more of the path when those repeat) and folder names."""
    specs = [c.spec for c in checkpoints]
    repeated = sorted({s for s in specs if specs.count(s) > 1})
    if repeated:
        raise BadInputError(f"--pretrained_weights lists {repeated[0]} more than once")
    for depth in (1, 2, None):
        labels = [c.spec if c.kind == "none" or depth is None else "/".join(Path(c.spec).parts[-depth:])
                  for c in checkpoints]
        if len(set(labels)) == len(labels):
            break
    for i, (checkpoint, label) in enumerate(zip(checkpoints, labels)):
        checkpoint.label = label
        checkpoint.folder = f"{i + 1}_" + re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(label)[0]).strip("_")


def build_encoder(checkpoint, opt):
    """The UniFormer with the checkpoint's weights (its 1-output head is not used here)."""
    if checkpoint.kind == "none":
        set_seed(opt.seed)  # the same random weights in every mode and fold
    return build_model(opt.model, checkpoint.path or None, depthwise=opt.depthwise)[0]


# ---------------------------------------------------------------- frozen encoder: cached clip embeddings

def embedding_folder(cache_dir, checkpoint, opt, amp):
    identity = {**checkpoint.identity, "model": opt.model, "depthwise": opt.depthwise, "amp": str(amp)}
    folder = Path(cache_dir) / f"{checkpoint.kind}-{digest(identity, 20)}"
    if not (folder / "checkpoint.json").is_file():
        atomic_write_json({"spec": checkpoint.spec, **identity}, folder / "checkpoint.json")
    return folder


def embed_videos(checkpoint, videos, opt, device, amp, cache_dir, log):
    """Clip embeddings (float32 [n_clips, d]) of every video, computed only where the cache has none.
    Returns (embeddings, number computed now)."""
    folder = embedding_folder(cache_dir, checkpoint, opt, amp)
    settings = clip_settings(opt)
    paths = [folder / f"{digest([[file_identity(f) for f in v.files], settings])}.npy" for v in videos]
    cached = [read_cache_entry(path) for path in paths]
    missing = [i for i, entry in enumerate(cached) if entry is None]
    log.info(f"{checkpoint.label}: {len(videos) - len(missing)} of {len(videos)} videos' embeddings cached in "
             f"{folder}" + (f"; embedding {len(missing)}" if missing else ""))
    if missing:
        model = build_encoder(checkpoint, opt).to(device).eval()
        if opt.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        loader = DataLoader(VideoClips([videos[i] for i in missing], opt, Path(cache_dir) / "frames"),
                            batch_size=None, num_workers=opt.num_workers, collate_fn=keep_item)
        start = time.perf_counter()
        # GPU: the clips of several videos per forward (--batch_size clips); CPU: one video at a time
        for done, (item, embeddings, _) in enumerate(infer_videos(model, batches(loader), device, amp=amp,
                                                                  channels_last=opt.channels_last,
                                                                  max_clips=opt.batch_size), start=1):
            with atomic_open(paths[missing[item["index"]]], "wb", fsync=False) as f:  # a lost entry is redone
                np.save(f, embeddings)
            if done % 50 == 0 or done == len(missing):
                log.info(f"  {done}/{len(missing)} videos embedded ({done / (time.perf_counter() - start):.2f} "
                         "videos/s)")
        del model
    return [entry if entry is not None else np.load(path) for entry, path in zip(cached, paths)], len(missing)


def fit_head(features, targets, task, opt, device=torch.device("cpu")):
    """Train a linear or shallow-MLP head on standardised clip embeddings (no selection: --head_epochs), on
    `device`; returns the function that scores videos (lists of clip embeddings)."""
    if len(features) < 2:
        raise BadInputError(f"a fold has {len(features)} training clip(s); use fewer --folds")
    mean, std = features.mean(0), features.std(0) + 1e-6
    x = torch.from_numpy((features - mean) / std).float().to(device)
    if task == "regression":
        centre, scale = float(np.mean(targets)), float(np.std(targets)) or 1.0
        y = torch.from_numpy((targets - centre) / scale).float()[:, None].to(device)
        loss_fn = nn.L1Loss()
    else:
        centre, scale = 0.0, 1.0
        y = torch.from_numpy(targets).long().to(device)
        loss_fn = nn.CrossEntropyLoss()
    set_seed(opt.seed)
    n_out = 1 if task == "regression" else 2
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
            out.append(float((logits[:, 0] * scale + centre).mean()) if task == "regression"
                       else float(torch.softmax(logits, dim=1)[:, 1].mean()))
        return np.array(out)

    return video_outputs


# ---------------------------------------------------------------- metrics

def scores(task, outputs, labels):
    """Regression: mae, rmse, r2, pearson_r. Classification (outputs = probabilities, threshold 0.5):
    accuracy, sensitivity, specificity, f1, auroc, and the cross-entropy `log_loss`. NaN where undefined."""
    outputs, labels = np.asarray(outputs, np.float64), np.asarray(labels, np.float64)
    if task == "regression":
        metrics = regression_metrics(outputs, labels)
        constant = len(labels) < 2 or np.ptp(outputs) == 0 or np.ptp(labels) == 0
        metrics["pearson_r"] = math.nan if constant else float(np.corrcoef(outputs, labels)[0, 1])
        return metrics
    predicted, positive = outputs >= 0.5, labels == 1
    tp, tn = int((predicted & positive).sum()), int((~predicted & ~positive).sum())
    fp, fn = int((predicted & ~positive).sum()), int((~predicted & positive).sum())

    def ratio(a, b):
        return a / b if b else math.nan

    p = np.clip(outputs, 1e-7, 1 - 1e-7)
    return {"accuracy": ratio(tp + tn, len(labels)), "sensitivity": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp), "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "auroc": float(roc_auc_score(labels, outputs)) if 0 < positive.sum() < len(labels) else math.nan,
            "log_loss": float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))),
            "tp": tp, "tn": tn, "fp": fp, "fn": fn}


def over_folds(fold_metrics, task):
    """Mean and sample SD over the folds of every table metric (folds where it is undefined left out)."""
    mean, std = {}, {}
    for key, *_ in TABLE_METRICS[task]:
        values = np.array([m[key] for m in fold_metrics], dtype=np.float64)
        values = values[np.isfinite(values)]
        mean[key] = float(values.mean()) if len(values) else math.nan
        std[key] = float(values.std(ddof=1)) if len(values) > 1 else (0.0 if len(values) else math.nan)
    return mean, std


def baseline_outputs(task, train_labels, n):
    """The training fold's mean EF, or its majority class as a probability of 1 or 0."""
    if task == "regression":
        return np.full(n, float(np.mean(train_labels)))
    return np.full(n, float(np.mean(train_labels) >= 0.5))


# ---------------------------------------------------------------- fine-tuning one fold through Run

class ClassProbability(nn.Module):
    """A 2-logit head seen as one output per clip, the class-1 probability (for predict_variable_clips)."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, embeddings):
        return torch.softmax(self.head(embeddings).float(), dim=1)[:, 1:]


def evaluate_videos(model, head, dataset, task, run, opt):
    """(metrics, result, seconds) of encoder + head on `dataset`, every video scored once across ranks."""
    start = time.perf_counter()
    scorer = unwrap(head) if task == "regression" else ClassProbability(unwrap(head))
    result = predict_variable_clips(model, scorer, dataset, run.dist, batch_size=opt.batch_size,
                                    num_workers=opt.num_workers, amp=run.amp, channels_last=opt.channels_last)
    metrics = scores(task, result["predictions"], result["labels"])
    metrics["error"] = metrics["mae"] if task == "regression" else metrics["log_loss"]
    if task == "classification":
        result = {k: v for k, v in result.items() if k != "embeddings"}  # EF ordering metrics mean nothing here
    return metrics, result, time.perf_counter() - start


def finetune_fold(checkpoint, fold, videos, task, opt, log, folder):
    """Train encoder + head on the fold's training patients; returns (outputs, seconds) on its test videos."""
    patients = [v.patient for v in videos]
    train_patients = list(fold.train)
    n_inner = min(max(2, round(1 / opt.finetune_val_fraction)), len(train_patients))
    try:  # best.pth is chosen on some of the training patients: at least 2 are needed
        if task == "classification":
            inner = stratified_folds(train_patients, [max(v.label for v in videos if v.patient == p)
                                                      for p in train_patients], n_inner, seed=opt.seed)[0]
        else:
            inner = contiguous_folds(train_patients, n_inner, seed=opt.seed)[0]
    except ValueError as e:
        raise BadInputError(f"fold {fold.index}: cannot set aside validation patients among its "
                            f"{len(train_patients)} training patient(s) to choose best.pth ({e}); "
                            "use fewer --folds or more patients") from None
    fingerprint = {"checkpoint": checkpoint.identity, "clips": clip_settings(opt), "task": task,
                   "model": opt.model, "test_patients": list(fold.val), "inner_val_patients": list(inner.val),
                   "seed": opt.seed, "learning_rate": opt.learning_rate, "weight_decay": opt.weight_decay,
                   "batch_size": opt.batch_size, "aug": opt.aug, "amp": opt.amp, "depthwise": opt.depthwise,
                   # the data: a relabelled or replaced video makes the fold's results another experiment
                   "videos": digest([[v.name, v.label, *[file_identity(f) for f in v.files]] for v in videos])}
    result_path, settings_path = folder / "fold_result.json", folder / "fold.json"
    if opt.resume and settings_path.is_file():
        if json.loads(settings_path.read_text())["settings"] != fingerprint:
            raise BadInputError(f"{settings_path}: this fold was started with other settings (checkpoint, data, "
                                "folds or training options); use another --output_dir or drop --resume")
        done = json.loads(result_path.read_text()) if result_path.is_file() else {}
        if done.get("epochs") == opt.epochs:  # finished with this many epochs; more epochs continue last.pth
            log.info(f"{checkpoint.label} fold {fold.index}: finished earlier (best epoch {done['best_epoch']}), kept")
            return np.array(done["outputs"]), done["seconds"]

    frame_cache = Path(opt.cache_dir) / "frames"
    train_set = TrainClips([videos[i] for i in sample_indices(patients, inner.train)], opt, frame_cache)
    inner_val = VideoClips([videos[i] for i in sample_indices(patients, inner.val)], opt, frame_cache)
    test_set = VideoClips([videos[i] for i in sample_indices(patients, fold.val)], opt, frame_cache)
    # Run counts epochs 0..opt.epochs as the training stages do: --epochs N passes are epochs 0..N-1.
    run_opt = argparse.Namespace(**{**vars(opt), "trial": opt.seed, "epochs": opt.epochs - 1, "wandb": False,
                                    "save_root": str(folder.parent), "resume": "auto" if opt.resume else None})
    run = Run.start(run_opt, "finetune", name=f"{checkpoint.folder}/fold_{fold.index}", folder=str(folder), log=log)
    run.error_name = "MAE" if task == "regression" else "cross-entropy"
    if run.is_main:
        atomic_write_json({"settings": fingerprint}, settings_path)
    loader = run.loader(train_set)
    log.info(f"{checkpoint.label} fold {fold.index}: fine-tuning on {len(train_set)} videos, best.pth chosen on "
             f"{len(inner_val)} videos of {len(inner.val)} training patients, tested on {len(test_set)} videos")

    model = build_encoder(checkpoint, opt)
    model.head.requires_grad_(False)  # the encoder's own 1-output head is not used
    head = get_shallow_mlp_head(model.head.in_features, 1 if task == "regression" else 2)
    nn.init.constant_(head[-1].bias, float(np.mean([v.label for v in train_set.videos])) if task == "regression"
                      else 0.0)
    if opt.sync_bn and run.dist.enabled:
        model, head = nn.SyncBatchNorm.convert_sync_batchnorm(model), nn.SyncBatchNorm.convert_sync_batchnorm(head)
    model, head = model.to(run.device), head.to(run.device)
    if opt.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    loss_fn = nn.L1Loss() if task == "regression" else nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW([p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad],
                                  lr=opt.learning_rate, weight_decay=opt.weight_decay)
    scaler = grad_scaler(run.device, run.amp)
    run.resume(model, head, {"optimizer": optimizer}, scaler)
    model, head = wrap_ddp(model, run.dist), wrap_ddp(head, run.dist)

    def validate(model, head):
        return evaluate_videos(model, head, inner_val, task, run, opt)

    for epoch in range(run.start_epoch, opt.epochs):
        model.train()
        head.train()
        meter = run.training_epoch(epoch, loader, opt.learning_rate)
        for batch in meter:
            images = prepare_batch(batch["image"], run.device, opt.channels_last)
            labels = batch["label"].to(run.device, non_blocking=True)
            with autocast(run.device, run.amp):
                _, embeddings = model(images)
            outputs = head(embeddings.float())  # head and loss in fp32
            loss = loss_fn(outputs, labels if task == "regression" else labels.view(-1).long())
            loss_value = loss.item()
            run.check_finite(loss_value, "fine-tuning loss")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            meter.update(clips=len(labels) * run.dist.world_size, loss=loss_value)
        run.end_epoch(epoch, meter, model, head, None,
                      {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()}, evaluate=validate)

    best = load_checkpoint(run.path("best.pth"))
    load_state_dict_strict(model, best["model"], "model", run.path("best.pth"))
    load_state_dict_strict(head, best["regressor"], "regressor", run.path("best.pth"))
    metrics, result, seconds = evaluate_videos(model, head, test_set, task, run, opt)
    if result["names"] != [v.name for v in test_set.videos]:
        raise RuntimeError("fine-tune evaluation returned the videos in another order")
    total = sum(e["seconds"] for e in run.timing["epochs"]) + sum(v["seconds"] for v in run.timing["validation"])
    outputs = np.asarray(result["predictions"], dtype=np.float64)
    if run.is_main:
        atomic_write_json({"epochs": opt.epochs, "best_epoch": int(best["epoch"]), "seconds": round(total + seconds, 3),
                           "outputs": outputs.tolist(), "videos": result["names"]}, result_path)
    barrier()
    log.info(f"{checkpoint.label} fold {fold.index}: best epoch {int(best['epoch'])}; test "
             + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    return outputs, total + seconds


# ---------------------------------------------------------------- reports

def roc_figure(fold_curves, labels, probabilities, title):
    """ROC curve of every fold (thin) and of all folds pooled (thick), with the AUROCs."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for index, fold_labels, fold_probabilities in fold_curves:
        if 0 < np.sum(fold_labels) < len(fold_labels):
            fpr, tpr, _ = roc_curve(fold_labels, fold_probabilities)
            ax.plot(fpr, tpr, lw=1, alpha=0.5,
                    label=f"fold {index} (AUROC {roc_auc_score(fold_labels, fold_probabilities):.3f})")
    fpr, tpr, _ = roc_curve(labels, probabilities)
    ax.plot(fpr, tpr, "k", lw=2.5, label=f"pooled (AUROC {roc_auc_score(labels, probabilities):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=7)
    return fig


def cell(mean, std, scale, decimals):
    if not math.isfinite(mean):
        return "n/a"
    return f"{scale * mean:.{decimals}f} ± {scale * std:.{decimals}f}"


def markdown_table(rows, task):
    columns = TABLE_METRICS[task]
    lines = ["| Checkpoint | Kind | " + " | ".join(header for _, header, *_ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for label, kind, mean, std in rows:
        lines.append(f"| {label} | {kind} | "
                     + " | ".join(cell(mean[key], std[key], scale, decimals) for key, _, scale, decimals in columns)
                     + " |")
    return "\n".join(lines)


def write_csv(table, path):
    with atomic_open(path, "w") as f:
        table.to_csv(f, index=False, float_format="%.6g")


def main(argv=None):
    opt = parse_option(argv)
    started = time.perf_counter()
    dist = init_distributed(opt.device)
    if dist.enabled and opt.mode != "finetune":
        raise BadInputError(f"--mode {opt.mode} runs as a single process (each video is embedded once); "
                            "torchrun is for --mode finetune")
    amp = amp_dtype(opt.amp, dist.device)

    # inputs first: a wrong folder, file or checkpoint fails here, before anything is written
    output_dir = Path(opt.output_dir)
    opt.cache_dir = str(opt.cache_dir or output_dir / "embedding_cache")
    if dist.is_main:
        check_writable_folder(output_dir)
        check_writable_folder(opt.cache_dir)
    barrier()
    log = setup_logger(output_dir / "transfer.log", dist.is_main)
    videos = list_videos(opt, log)
    task = decide_task(opt, videos)
    folds = make_folds(opt, videos, task)
    shapes = {k: tuple(v.shape) for k, v in get_feature_extractor(opt.model).state_dict().items()
              if not k.startswith("head.")}
    checkpoints = [inspect_checkpoint(spec, opt, shapes) for spec in opt.pretrained_weights]
    name_checkpoints(checkpoints)

    patients = [v.patient for v in videos]
    labels = np.array([v.label for v in videos], dtype=np.float64)
    log.info(f"transfer_learning.py {' '.join(sys.argv[1:] if argv is None else map(str, argv))}")
    log.info("Options:\n" + "\n".join(f"  {key}: {value}" for key, value in vars(opt).items()), extra=FILE_ONLY)
    source = (f"CAMUS {' + '.join(opt.views)}" if opt.dataset == "camus" else
              f"HMC-QU {opt.hmcqu_view}" if opt.dataset == "hmcqu" else "labelled folder")
    labelled = (f"classification, {int(labels.sum())} positive" if task == "classification" else
                f"regression, labels {labels.min():.1f}..{labels.max():.1f}")
    summary = (f"{len(videos)} videos of {len(set(patients))} patients ({source}; {labelled}); "
               f"{len(folds)} patient-level folds")
    log.info(summary + f"; mode {opt.mode}, {opt.model}, clips of {opt.frames} frames"
             + ("" if opt.dataset == "camus" else f" every {opt.frequency}, a clip every {opt.clip_stride} frames")
             + f"; device {dist.device}, AMP {amp or 'off (fp32)'}")
    for checkpoint in checkpoints:
        log.info(f"  {checkpoint.label}: {checkpoint.description}"
                 + (f" ({checkpoint.path})" if checkpoint.path and checkpoint.path != checkpoint.spec else ""))

    fold_of = np.full(len(videos), -1)
    for fold in folds:
        fold_of[sample_indices(patients, fold.val)] = fold.index
    reports, prediction_rows, timings, all_outputs = [], [], [], []
    for checkpoint in checkpoints:
        began = time.perf_counter()
        outputs, fold_seconds, computed = np.full(len(videos), np.nan), {}, None
        if opt.mode == "finetune":
            for fold in folds:
                folder = output_dir / "finetune" / checkpoint.folder / f"fold_{fold.index}"
                test = sample_indices(patients, fold.val)
                outputs[test], fold_seconds[fold.index] = finetune_fold(checkpoint, fold, videos, task, opt, log,
                                                                        folder)
            on_interrupt(lambda: "interrupted; finished folds are kept: rerun with --resume")
        else:
            on_interrupt(lambda: f"interrupted; the embeddings computed so far are cached in {opt.cache_dir}: "
                                 "rerun the same command to continue")
            embeddings, computed = embed_videos(checkpoint, videos, opt, dist.device, amp, opt.cache_dir, log)
            embedded = time.perf_counter()
            for fold in folds:
                fold_start = time.perf_counter()
                train, test = sample_indices(patients, fold.train), sample_indices(patients, fold.val)
                features = np.concatenate([embeddings[i] for i in train])
                targets = np.concatenate([np.full(len(embeddings[i]), labels[i]) for i in train])
                predict = fit_head(features, targets, task, opt, dist.device)
                outputs[test] = predict([embeddings[i] for i in test])
                fold_seconds[fold.index] = time.perf_counter() - fold_start
            log.info(f"{checkpoint.label}: {opt.mode} heads of {len(folds)} folds trained in "
                     f"{time.perf_counter() - embedded:.1f} s")
        fold_reports = []
        for fold in folds:
            test = sample_indices(patients, fold.val)
            fold_reports.append({"index": fold.index, "train_patients": list(fold.train),
                                 "test_patients": list(fold.val), "n_train_videos": len(videos) - len(test),
                                 "n_test_videos": len(test), "seconds": round(fold_seconds[fold.index], 3),
                                 "metrics": scores(task, outputs[test], labels[test])})
        mean, std = over_folds([f["metrics"] for f in fold_reports], task)
        seconds = time.perf_counter() - began
        timings.append((checkpoint.label, seconds))
        all_outputs.append(outputs)
        reports.append({"label": checkpoint.label, "spec": checkpoint.spec, "path": checkpoint.path,
                        "kind": checkpoint.kind, "epoch": checkpoint.epoch, "mean": mean, "std": std,
                        "pooled": scores(task, outputs, labels), "seconds": round(seconds, 3),
                        "videos_embedded": computed, "folds": fold_reports})
        for i, video in enumerate(videos):
            prediction_rows.append({"checkpoint": checkpoint.label, "fold": int(fold_of[i]), "video": video.name,
                                    "patient": video.patient, "label": video.label,
                                    "prediction": outputs[i] if task == "regression" else int(outputs[i] >= 0.5),
                                    "probability": outputs[i] if task == "classification" else None})
        log.info(f"{checkpoint.label}: done in {seconds:.1f} s; mean over folds: "
                 + "  ".join(f"{key} {mean[key]:.4g}" for key, *_ in TABLE_METRICS[task]))

    # the same folds scored by a constant: the training fold's mean EF / majority class
    baseline = np.full(len(videos), np.nan)
    for fold in folds:
        test = sample_indices(patients, fold.val)
        baseline[test] = baseline_outputs(task, labels[sample_indices(patients, fold.train)], len(test))
    baseline_folds = [scores(task, baseline[sample_indices(patients, f.val)], labels[sample_indices(patients, f.val)])
                      for f in folds]
    baseline_mean, baseline_std = over_folds(baseline_folds, task)
    baseline_label = "training-fold mean" if task == "regression" else "majority class"
    cleanup()
    if not dist.is_main:
        return

    settings = {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(opt).items()}, "task": task,
                "n_videos": len(videos), "n_patients": len(set(patients)), "n_folds": len(folds)}
    results = {"settings": settings,
               "folds": [{"index": f.index, "train_patients": list(f.train), "test_patients": list(f.val)}
                         for f in folds],
               "checkpoints": reports,
               "baseline": {"label": baseline_label, "mean": baseline_mean, "std": baseline_std,
                            "folds": baseline_folds, "pooled": scores(task, baseline, labels)}}
    atomic_write_json(results, output_dir / "results.json")  # NaN -> null
    write_csv(pd.DataFrame(prediction_rows, columns=PREDICTION_COLUMNS), output_dir / "predictions.csv")
    summary_rows = []
    for report in reports + [{"label": baseline_label, "kind": "baseline", "spec": "", **results["baseline"]}]:
        row = {"checkpoint": report["label"], "kind": report["kind"], "spec": report["spec"], "folds": len(folds)}
        for key, *_ in TABLE_METRICS[task]:
            row.update({f"{key}_mean": report["mean"][key], f"{key}_std": report["std"][key],
                        f"{key}_pooled": report["pooled"][key]})
        summary_rows.append(row)
    write_csv(pd.DataFrame(summary_rows), output_dir / "summary.csv")
    descriptions = {c.label: c.description for c in checkpoints}
    table = markdown_table([(r["label"], descriptions[r["label"]], r["mean"], r["std"]) for r in reports]
                           + [(baseline_label, "baseline", baseline_mean, baseline_std)], task)
    how = {"linear": "a linear head on frozen embeddings", "mlp": "a shallow MLP head on frozen embeddings",
           "finetune": "encoder and head fine-tuned"}[opt.mode]
    note = f"{summary}. Mean ± SD over the folds; {how}; {opt.model}, {opt.frames} frames per clip."
    atomic_write_text(f"{note}\n\n{table}\n", output_dir / "summary.md")

    plots = output_dir / "plots"
    for checkpoint, values in zip(checkpoints, all_outputs):
        title = f"{checkpoint.label} ({opt.mode}, {len(folds)} folds)"
        if task == "regression":
            save_figure(prediction_figure(labels, values, title=title), plots / f"ef_scatter_{checkpoint.folder}.png")
        else:
            curves = [(f.index, labels[sample_indices(patients, f.val)], values[sample_indices(patients, f.val)])
                      for f in folds]
            save_figure(roc_figure(curves, labels, values, title), plots / f"roc_{checkpoint.folder}.png")

    log.info("Time: " + ", ".join(f"{label} {seconds:.1f} s" for label, seconds in timings)
             + f"; total {time.perf_counter() - started:.1f} s")
    log.info(f"Saved in {output_dir}: results.json, summary.csv, summary.md, predictions.csv, plots/, transfer.log")
    log.info(note + "\n" + table, extra=FILE_ONLY)
    print(f"\n{note}\n\n{table}\n", flush=True)


if __name__ == "__main__":
    run_main(main)
