"""What transfer_learning.py evaluates every checkpoint on: the checkpoints (read once by models.build.read_weights,
named for reports and folders) and the `Experiment` (videos, task, folds, clip settings, device)."""
import argparse
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from datasets.transfer import ClipSpec, file_identity
from models import build_model, read_weights
from models.settings import fill_options
from utils.engine.seed import set_seed
from utils.evaluation.folds import sample_indices
from utils.script.errors import BadInputError


@dataclass
class Checkpoint:
    weights: object  # models.build.Weights: spec, path, kind, epoch, description
    identity: dict  # what its embeddings and fine-tuned folds are cached under
    label: str = ""
    folder: str = ""  # name of its folders under OUTPUT_DIR


def read_checkpoint(spec, opt):
    """A --pretrained_weights entry read once; an unknown kind, or weights that do not fit --model, is one line."""
    weights = read_weights(spec)
    if weights.kind == "none":
        return Checkpoint(weights, {"kind": "none", "seed": opt.seed, "torch": torch.__version__})
    if opt.model is None:  # no --model: the first checkpoint's (its settings, else the model its weights fit)
        fill_options(opt, weights, keys=("model",))
    build_model(opt.model, weights, depthwise=opt.depthwise)  # the loader's one-line error (the --model that fits)
    return Checkpoint(weights, {"kind": weights.kind, "file": file_identity(weights.path)})


def name_checkpoints(checkpoints):
    """Short unique labels (file names, or more of the path when those repeat) and folder names."""
    specs = [c.weights.spec for c in checkpoints]
    repeated = sorted({s for s in specs if specs.count(s) > 1})
    if repeated:
        raise BadInputError(f"--pretrained_weights lists {repeated[0]} more than once")
    for depth in (1, 2, None):
        labels = [spec if c.weights.kind == "none" or depth is None else "/".join(Path(spec).parts[-depth:])
                  for c, spec in zip(checkpoints, specs)]
        if len(set(labels)) == len(labels):
            break
    for i, (checkpoint, label) in enumerate(zip(checkpoints, labels)):
        checkpoint.label = label
        checkpoint.folder = f"{i + 1}_" + re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(label)[0]).strip("_")
    return checkpoints


def build_encoder(checkpoint, opt):
    """The UniFormer with the checkpoint's weights (its 1-output head is not used here)."""
    if checkpoint.weights.kind == "none":
        set_seed(opt.seed)  # the same random weights in every mode and fold
    return build_model(opt.model, checkpoint.weights, depthwise=opt.depthwise)[0]


@dataclass
class Experiment:
    """What every checkpoint is evaluated on: the videos, their task and folds, and how to run."""
    opt: argparse.Namespace
    log: object
    dist: object
    videos: list
    task: str
    folds: list
    clip_spec: ClipSpec  # how its videos are cut into clips (a `spec` is a weights spec, models.build)
    amp: object = None
    patients: list = field(init=False)
    labels: np.ndarray = field(init=False)

    def __post_init__(self):
        self.patients = [v.patient for v in self.videos]
        self.labels = np.array([v.label for v in self.videos], dtype=np.float64)

    def indices(self, patients):
        return sample_indices(self.patients, patients)

    def summary(self):
        opt, labels = self.opt, self.labels
        hmcqu_views = "A4C + A2C" if opt.hmcqu_view == "both" else opt.hmcqu_view
        source = (f"CAMUS {' + '.join(opt.views)}" if opt.dataset == "camus" else
                  f"HMC-QU {hmcqu_views}" if opt.dataset == "hmcqu" else "labelled folder")
        labelled = (f"classification, {int(labels.sum())} positive" if self.task == "classification" else
                    f"regression, labels {labels.min():.1f}..{labels.max():.1f}")
        return (f"{len(self.videos)} videos of {len(set(self.patients))} patients ({source}; {labelled}); "
                f"{len(self.folds)} patient-level folds")
