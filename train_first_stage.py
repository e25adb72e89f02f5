"""CoReEcho stage 1: the UniFormer encoder learns continuous EF representations with Rank-N-Contrast.

Every batch holds two independently augmented clips per video. The encoder is updated by the RnC loss
over all 2N embeddings (gathered from every GPU under torchrun); a shallow MLP regressor learns EF with
an L1 loss on the DETACHED embeddings, with its own AdamW optimiser.

    python train_first_stage.py --data_folder EchoNet-Dynamic --pretrained_weight uniformer_small_k400_16x8.pth \
        --model uniformer_small --batch_size 16 --frames 36 --frequency 4 --learning_rate 1e-4 \
        --weight_decay 1e-4 --lr_decay_rate 0.1 --temp 1.0 --aug --epochs 25 --trial 0
"""
import functools

import torch

from datasets import EchoNetFixedClips, EchoNetRNC
from losses import RnCLoss
from models import get_feature_extractor, get_shallow_mlp_head, place_model
from models.options import training_parser
from models.settings import training_settings
from utils.engine.amp import autocast, grad_scaler, prepare_batch
from utils.engine.distributed import all_gather_with_grad, wrap_ddp
from utils.engine.seed import set_seed
from utils.script.cli import run_main
from utils.training.report import final_report
from utils.training.resume import resume
from utils.training.run import Run
from utils.training.saver import CheckpointSaver
from utils.training.validation import validate_and_save


NO_WEIGHTS = ("WARNING: no --pretrained_weight: the encoder starts from RANDOM weights. The paper starts from "
              "Kinetics-400 (uniformer_small_k400_16x8.pth); expect clearly worse results.")


def learning_rate(opt, epoch):
    """Released schedule: constant, then multiplied by lr_decay_rate from lr_step_epoch on."""
    if opt.lr_step_epoch != -1 and epoch >= opt.lr_step_epoch:
        return opt.learning_rate * opt.lr_decay_rate
    return opt.learning_rate


def data(opt):
    """The training set (two augmented clips a video), val and test sets of fixed clips, and their maker."""
    train_set = EchoNetRNC(opt.data_folder, "train", opt.frames, opt.frequency, aug=opt.aug, seed=opt.trial,
                           cache_dir=opt.cache_dir)
    fixed_clips = functools.partial(EchoNetFixedClips, opt.data_folder, frames=opt.frames, frequency=opt.frequency,
                                    n_clips=opt.val_n_clips_per_sample, seed=opt.trial, cache_dir=opt.cache_dir)
    # test is scored by the final report: its videos are checked now, not after 26 epochs
    return train_set, fixed_clips("val"), fixed_clips("test"), fixed_clips


def seeded_model(opt):
    """The encoder (from --pretrained_weight, read once) and a fresh shallow regressor, seeded by --trial. The
    encoder's own 512->1 head is not trained in stage 1."""
    set_seed(opt.trial, opt.deterministic)
    model = get_feature_extractor(opt.model, opt.pretrained_weights, depthwise=opt.depthwise)
    model.head.requires_grad_(False)
    return model, get_shallow_mlp_head(model.head.in_features, 1)


def on_device(opt, run, model, regressor):
    """Both on the run's device (SyncBatchNorm under torchrun with --sync_bn); the modes are set per epoch."""
    if opt.sync_bn and run.dist.enabled:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        regressor = torch.nn.SyncBatchNorm.convert_sync_batchnorm(regressor)
    return place_model(model, run.device, opt.channels_last), place_model(regressor, run.device)


def main(argv=None):
    opt = training_parser(stage=1).parse_args(argv)

    train_set, val_set, test_set, fixed_clips = data(opt)  # first: a wrong folder fails before a run folder
    model, regressor = seeded_model(opt)  # and a weights file that does not fit --model

    run = Run.start(opt, stage=1)
    loader = run.loader(train_set)
    run.log.info(f"Train {len(train_set)} videos ({len(loader)} batches of 2x{opt.batch_size} clips per process), "
                 f"val {len(val_set)} videos")
    if opt.pretrained_weights is None:
        run.log.warning(NO_WEIGHTS)
    model, regressor = on_device(opt, run, model, regressor)
    criterion = RnCLoss(temperature=opt.temp, label_diff=opt.label_diff, feature_sim=opt.feature_sim)
    l1_loss = torch.nn.L1Loss()
    # two AdamW: the encoder's (by RnC) and the regressor's (by L1)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=opt.learning_rate,
                                  weight_decay=opt.weight_decay)
    optimizer_regressor = torch.optim.AdamW(regressor.parameters(), lr=opt.learning_rate, weight_decay=opt.weight_decay)
    scaler = grad_scaler(run.device, run.amp)
    saver = CheckpointSaver(run, model, regressor, {"optimizer": optimizer, "optimizer_regressor": optimizer_regressor},
                            scaler, settings=training_settings(opt, stage=1))
    resumed = resume(run, saver, opt.resume)

    model, regressor = wrap_ddp(model, run.dist), wrap_ddp(regressor, run.dist)
    train_model = torch.compile(model) if opt.compile else model

    run.log.info(f"Training epochs {resumed.start_epoch}..{opt.epochs} ({opt.epochs + 1} passes in all, as the "
                 f"released scripts loop range(0, epochs + 1)); lr x{opt.lr_decay_rate} from epoch "
                 f"{opt.lr_step_epoch}; AMP {run.amp or 'off (fp32)'}")
    for epoch in range(resumed.start_epoch, opt.epochs + 1):
        lr = learning_rate(opt, epoch)
        for group in optimizer.param_groups + optimizer_regressor.param_groups:
            group["lr"] = lr
        train_model.train()
        regressor.train()
        meter = run.training_epoch(epoch, loader, lr, resumed, saver)
        for view1, view2 in meter:
            images = prepare_batch(torch.cat([view1["image"], view2["image"]]), run.device, opt.channels_last)
            labels = view1["label"].to(run.device, non_blocking=True)
            bsz = labels.shape[0]
            with autocast(run.device, run.amp):
                _, embeddings = train_model(images)
            features = torch.stack(embeddings.float().split([bsz, bsz]), dim=1)  # [bsz, 2, d]
            # RnC sees the whole global batch: gathered embeddings keep their gradient path.
            loss = criterion(all_gather_with_grad(features), all_gather_with_grad(labels))
            loss_value = loss.item()
            run.check_finite(loss_value, "RnC loss", meter)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            detached = torch.cat([features[:, 0], features[:, 1]]).detach()
            loss_reg = l1_loss(regressor(detached), labels.repeat(2, 1))
            loss_reg_value = loss_reg.item()
            run.check_finite(loss_reg_value, "regressor L1 loss", meter)
            optimizer_regressor.zero_grad(set_to_none=True)
            loss_reg.backward()
            optimizer_regressor.step()
            meter.update(clips=2 * bsz * run.dist.world_size, RnC=loss_value, L1=loss_reg_value)
            run.step_done(meter, saver, opt.save_every_steps)  # the log line; a SIGTERM saves and stops

        validate_and_save(run, saver, meter, model, regressor, val_set)  # best.pth when best, last.pth

    final_report(run, saver, model, regressor, {"test": test_set, "val": val_set, "train": fixed_clips("train")})


if __name__ == "__main__":
    run_main(main)
