"""The finetune mode: encoder + shallow MLP head trained end to end per fold with the pieces of utils.training
(--amp, torchrun, --resume, best.pth chosen on some of the fold's training patients), then scored on its test
patients."""
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from datasets.clips import MEAN, STD
from datasets.transfer import CAMUS_MEAN, CAMUS_STD, TrainClips, VideoClips, digest, file_identity
from models import get_shallow_mlp_head, place_model
from models.settings import training_settings
from utils.engine.amp import autocast, grad_scaler, prepare_batch
from utils.engine.distributed import barrier, broadcast_buffers, wrap_ddp
from utils.engine.seed import set_seed
from utils.evaluation.folds import patient_folds
from utils.evaluation.inference import InferenceSettings, predict
from utils.evaluation.metrics import scores
from utils.files.atomic import atomic_write_json
from utils.files.checkpoint import load_checkpoint, load_state_dict_strict, unwrap
from utils.script.cli import on_interrupt
from utils.script.errors import BadInputError
from utils.training.resume import resume
from utils.training.run import Run
from utils.training.saver import CheckpointSaver
from utils.training.validation import report_epoch

from .experiment import build_encoder


class ClassProbability(nn.Module):
    """A 2-logit head seen as one output per clip, the class-1 probability (for inference.predict)."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, embeddings):
        return torch.softmax(self.head(embeddings).float(), dim=1)[:, 1:]


def evaluate_videos(model, head, dataset, task, run, opt):
    """(metrics, result, seconds) of encoder + head on `dataset`, every video scored once across ranks."""
    start_time = time.perf_counter()
    scorer = unwrap(head) if task == "regression" else ClassProbability(unwrap(head))
    settings = InferenceSettings(run.amp, opt.channels_last, max_videos=opt.batch_size, num_workers=opt.num_workers)
    result = predict(model, scorer, dataset, run.dist, settings)
    metrics = scores(task, result["predictions"], result["labels"])
    metrics["error"] = metrics["mae"] if task == "regression" else metrics["log_loss"]
    if task == "classification":
        result = {k: v for k, v in result.items() if k != "embeddings"}  # EF ordering metrics mean nothing here
    return metrics, result, time.perf_counter() - start_time


def inner_split(exp, fold):
    """(inner_train, inner_val): the fold's training patients split again, to train on the first and choose
    best.pth on the second (the held-out part of the first inner fold)."""
    opt, train = exp.opt, exp.indices(fold.train)
    n_inner = min(max(2, round(1 / opt.finetune_val_fraction)), len(fold.train))
    try:  # at least 2 training patients are needed
        inner = patient_folds([exp.patients[i] for i in train], exp.labels[train], n_inner,
                              stratified=exp.task == "classification", seed=opt.seed)[0]
    except ValueError as e:
        raise BadInputError(f"fold {fold.index}: cannot set aside validation patients among its "
                            f"{len(fold.train)} training patient(s) to choose best.pth ({e}); "
                            "use fewer --folds or more patients") from None
    return inner.train, inner.test


def fold_fingerprint(exp, checkpoint, fold, inner_val):
    """Everything that makes a fold's results: --resume continues a fold only when none of it changed."""
    opt = exp.opt
    return {"checkpoint": checkpoint.identity, "clips": exp.clip_spec.settings(exp.videos[0]), "task": exp.task,
            "model": opt.model, "test_patients": list(fold.test), "inner_val_patients": list(inner_val),
            "seed": opt.seed, "learning_rate": opt.learning_rate, "weight_decay": opt.weight_decay,
            "batch_size": opt.batch_size, "aug": opt.aug, "amp": opt.amp, "depthwise": opt.depthwise,
            # the data: a relabelled or replaced video makes the fold's results another experiment
            "videos": digest([[v.name, v.label, *[file_identity(f) for f in v.files]] for v in exp.videos])}


def finished_fold(exp, checkpoint, fold, folder, fingerprint):
    """(outputs, seconds) of a fold that --resume finds finished with these settings and epochs, else None."""
    result_path, settings_path = folder / "fold_result.json", folder / "fold.json"
    if not (exp.opt.resume and settings_path.is_file()):
        return None
    if json.loads(settings_path.read_text())["settings"] != fingerprint:
        raise BadInputError(f"{settings_path}: this fold was started with other settings (checkpoint, data, "
                            "folds or training options); use another --output_dir or drop --resume")
    done = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if done.get("epochs") != exp.opt.epochs:  # unfinished, or more epochs asked: continue from last.pth
        return None
    exp.log.info(f"{checkpoint.label} fold {fold.index}: finished earlier (best epoch {done['best_epoch']}), kept")
    return np.array(done["outputs"]), done["seconds"]


def finetune_setup(exp, checkpoint, run, train_set):
    """Encoder (the checkpoint's), a fresh shallow MLP head, AdamW, the loss scaler and their saver, resumed when
    asked."""
    opt, regression = exp.opt, exp.task == "regression"
    model = build_encoder(checkpoint, opt)
    model.head.requires_grad_(False)  # the encoder's own 1-output head is not used
    head = get_shallow_mlp_head(model.head.in_features, 1 if regression else 2)
    nn.init.constant_(head[-1].bias, float(np.mean([v.label for v in train_set.videos])) if regression else 0.0)
    if opt.sync_bn and run.dist.enabled:
        model, head = nn.SyncBatchNorm.convert_sync_batchnorm(model), nn.SyncBatchNorm.convert_sync_batchnorm(head)
    model, head = place_model(model, run.device, opt.channels_last), place_model(head, run.device)
    optimizer = torch.optim.AdamW([p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad],
                                  lr=opt.learning_rate, weight_decay=opt.weight_decay)
    scaler = grad_scaler(run.device, run.amp)
    camus = exp.clip_spec.normalisation == "camus"
    # what the fold's checkpoints say of themselves, as a training stage's do (models.settings)
    settings = training_settings(opt, stage="finetune", mean=[CAMUS_MEAN] * 3 if camus else MEAN,
                                 std=[CAMUS_STD] * 3 if camus else STD, task=exp.task, dataset=opt.dataset)
    saver = CheckpointSaver(run, model, head, {"optimizer": optimizer}, scaler,
                            error_name="MAE" if regression else "cross-entropy", settings=settings)
    resumed = resume(run, saver, "auto" if opt.resume else None)
    return wrap_ddp(model, run.dist), wrap_ddp(head, run.dist), optimizer, scaler, saver, resumed


def backward_step(loss, optimizer, scaler):
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def train_fold(exp, checkpoint, run, train_set, val_set):
    """Fine-tune (best.pth chosen on val_set); returns encoder + head with best.pth loaded, its epoch, and the
    seconds spent training and validating."""
    opt, regression = exp.opt, exp.task == "regression"
    loader = run.loader(train_set)
    model, head, optimizer, scaler, saver, resumed = finetune_setup(exp, checkpoint, run, train_set)
    loss_fn = nn.L1Loss() if regression else nn.CrossEntropyLoss()
    for epoch in range(resumed.start_epoch, opt.epochs):
        model.train()
        head.train()
        meter = run.training_epoch(epoch, loader, opt.learning_rate, resumed, saver)
        for batch in meter:
            images = prepare_batch(batch["image"], run.device, opt.channels_last)
            labels = batch["label"].to(run.device, non_blocking=True)
            with autocast(run.device, run.amp):
                _, embeddings = model(images)
            outputs = head(embeddings.float())  # head and loss in fp32
            loss = loss_fn(outputs, labels if regression else labels.view(-1).long())
            loss_value = loss.item()
            run.check_finite(loss_value, "fine-tuning loss", meter)
            backward_step(loss, optimizer, scaler)
            meter.update(clips=len(labels) * run.dist.world_size, loss=loss_value)
            run.step_done(meter, saver)  # the log line; a SIGTERM saves and stops

        broadcast_buffers(model, head)  # every rank validates the model the checkpoints keep
        validation = metrics, _, _ = evaluate_videos(model, head, val_set, exp.task, run, opt)
        saver.save_best(epoch, float(metrics["error"]))  # when it is the best
        text = "  ".join(f"{key} {value:.4g}" for key, value in metrics.items()
                         if isinstance(value, (int, float)) and key != "error")
        report_epoch(run, saver, meter, opt.epochs - 1, validation, text)
        run.end_epoch(saver, epoch)  # last.pth; a SIGTERM during validation stops here
    best = load_checkpoint(run.path("best.pth"))
    load_state_dict_strict(model, best["model"], "model", run.path("best.pth"))
    load_state_dict_strict(head, best["regressor"], "regressor", run.path("best.pth"))
    timing = saver.timing
    seconds = sum(e["seconds"] for e in timing["epochs"]) + sum(v["seconds"] for v in timing["validation"])
    return model, head, int(best["epoch"]), seconds


def finetune_fold(exp, checkpoint, fold):
    """Train encoder + head on the fold's training patients; returns (outputs, seconds) on its test videos."""
    opt, log = exp.opt, exp.log
    folder = Path(opt.output_dir) / "finetune" / checkpoint.folder / f"fold_{fold.index}"
    inner_train, inner_val = inner_split(exp, fold)
    fingerprint = fold_fingerprint(exp, checkpoint, fold, inner_val)
    done = finished_fold(exp, checkpoint, fold, folder, fingerprint)
    if done is not None:
        return done
    frame_cache = Path(opt.cache_dir) / "frames"
    train_set = TrainClips([exp.videos[i] for i in exp.indices(inner_train)], exp.clip_spec, frame_cache)
    val_set = VideoClips([exp.videos[i] for i in exp.indices(inner_val)], exp.clip_spec, frame_cache)
    test_set = VideoClips([exp.videos[i] for i in exp.indices(fold.test)], exp.clip_spec, frame_cache)
    set_seed(opt.seed, opt.deterministic)
    run = Run.start(opt, "finetune", name=f"{checkpoint.folder}/fold_{fold.index}", folder=str(folder), log=log,
                    seed=opt.seed)
    if run.is_main:
        atomic_write_json({"settings": fingerprint}, folder / "fold.json")
    log.info(f"{checkpoint.label} fold {fold.index}: fine-tuning on {len(train_set)} videos, best.pth chosen on "
             f"{len(val_set)} videos of {len(inner_val)} training patients, tested on {len(test_set)} videos")
    model, head, best_epoch, total = train_fold(exp, checkpoint, run, train_set, val_set)
    metrics, result, seconds = evaluate_videos(model, head, test_set, exp.task, run, opt)
    if result["names"] != [v.name for v in test_set.videos]:
        raise RuntimeError("fine-tune evaluation returned the videos in another order")
    outputs = np.asarray(result["predictions"], dtype=np.float64)
    if run.is_main:
        atomic_write_json({"epochs": opt.epochs, "best_epoch": best_epoch, "seconds": round(total + seconds, 3),
                           "outputs": outputs.tolist(), "videos": result["names"]}, folder / "fold_result.json")
    barrier()
    log.info(f"{checkpoint.label} fold {fold.index}: best epoch {best_epoch}; test "
             + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    return outputs, total + seconds


def finetuned_outputs(exp, checkpoint):
    """(outputs per video, seconds per fold) of encoder + head fine-tuned per fold."""
    outputs, fold_seconds = np.full(len(exp.videos), np.nan), {}
    for fold in exp.folds:
        outputs[exp.indices(fold.test)], fold_seconds[fold.index] = finetune_fold(exp, checkpoint, fold)
    on_interrupt(lambda: "interrupted; finished folds are kept: rerun with --resume")
    return outputs, fold_seconds
