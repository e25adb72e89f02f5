"""CoReEcho stage 1: the UniFormer encoder learns continuous EF representations with Rank-N-Contrast.

Every batch holds two independently augmented clips per video. The encoder is updated by the RnC loss
over all 2N embeddings (gathered from every GPU under torchrun); a shallow MLP regressor learns EF with
an L1 loss on the DETACHED embeddings, with its own AdamW optimiser.

    python train_first_stage.py --data_folder EchoNet-Dynamic --pretrained_weight uniformer_small_k400_16x8.pth \
        --model uniformer_small --batch_size 16 --frames 36 --frequency 4 --learning_rate 1e-4 \
        --weight_decay 1e-4 --lr_decay_rate 0.1 --temp 1.0 --aug --epochs 25 --trial 0
"""
import time

import torch

from datasets import EchoNetRNC
from losses import RnCLoss
from models import get_feature_extractor, get_shallow_mlp_head
from utils.cli import run_main
from utils.distributed import all_gather_with_grad, cleanup, wrap_ddp
from utils.options import training_parser
from utils.runtime import amp_dtype, autocast, batches, grad_scaler, prepare_batch
from utils.training import (check_finite, end_of_epoch, eval_dataset, final_report, maybe_resume, progress,
                            setup_run, training_loader)


def learning_rate(opt, epoch):
    """Released schedule: constant, then multiplied by lr_decay_rate from lr_step_epoch on."""
    if opt.lr_step_epoch != -1 and epoch >= opt.lr_step_epoch:
        return opt.learning_rate * opt.lr_decay_rate
    return opt.learning_rate


def main(argv=None):
    opt = training_parser(stage=1).parse_args(argv)
    dist, log, wandb_run = setup_run(opt, stage=1)
    amp = amp_dtype(opt.amp, dist.device)

    # data
    train_set = EchoNetRNC(opt.data_folder, "train", opt.frames, opt.frequency, aug=opt.aug, seed=opt.trial,
                           cache_dir=opt.cache_dir)
    val_set = eval_dataset(opt, "val")
    train_loader = training_loader(opt, dist, train_set)
    log.info(f"Train {len(train_set)} videos ({len(train_loader)} batches of 2x{opt.batch_size} clips per process), "
             f"val {len(val_set)} videos")

    # model: encoder + shallow regressor; the encoder's own 512->1 head is not trained in stage 1
    model = get_feature_extractor(opt.model, opt.pretrained_weights)
    model.head.requires_grad_(False)
    regressor = get_shallow_mlp_head(model.head.in_features, 1)
    if opt.sync_bn and dist.enabled:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        regressor = torch.nn.SyncBatchNorm.convert_sync_batchnorm(regressor)
    model, regressor = model.to(dist.device), regressor.to(dist.device)
    if opt.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    criterion = RnCLoss(temperature=opt.temp, label_diff=opt.label_diff, feature_sim=opt.feature_sim)
    l1_loss = torch.nn.L1Loss()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=opt.learning_rate,
                                  weight_decay=opt.weight_decay)
    optimizer_regressor = torch.optim.AdamW(regressor.parameters(), lr=opt.learning_rate, weight_decay=opt.weight_decay)
    scaler = grad_scaler(dist.device, amp)

    optimizers = {"optimizer": optimizer, "optimizer_regressor": optimizer_regressor}
    start_epoch, best = maybe_resume(opt, model, regressor, optimizers, scaler, log)

    model, regressor = wrap_ddp(model, dist), wrap_ddp(regressor, dist)
    train_model = torch.compile(model) if opt.compile else model

    log.info(f"Training epochs {start_epoch}..{opt.epochs} ({opt.epochs + 1} passes in all, as the released "
             f"scripts loop range(0, epochs + 1)); lr x{opt.lr_decay_rate} from epoch {opt.lr_step_epoch}; "
             f"AMP {amp or 'off'}")
    for epoch in range(start_epoch, opt.epochs + 1):
        lr = learning_rate(opt, epoch)
        for group in optimizer.param_groups + optimizer_regressor.param_groups:
            group["lr"] = lr
        train_loader.sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        train_model.train()
        regressor.train()
        loss_sum = loss_reg_sum = 0.0
        end = time.time()
        epoch_batches = progress(dist, f"epoch {epoch}")(batches(train_loader), len(train_loader))
        for step, (view1, view2) in enumerate(epoch_batches):
            data_time = time.time() - end
            images = prepare_batch(torch.cat([view1["image"], view2["image"]]), dist.device, opt.channels_last)
            labels = view1["label"].to(dist.device, non_blocking=True)
            bsz = labels.shape[0]

            with autocast(dist.device, amp):
                _, embeddings = train_model(images)
            embeddings = embeddings.float()
            features = torch.stack(embeddings.split([bsz, bsz]), dim=1)  # [bsz, 2, d]
            # RnC sees the whole global batch: gathered embeddings keep their gradient path.
            loss = criterion(all_gather_with_grad(features), all_gather_with_grad(labels))
            loss_value = loss.item()
            check_finite(loss_value, epoch, step, "RnC loss", opt)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

            detached = torch.cat([features[:, 0], features[:, 1]]).detach()
            loss_reg = l1_loss(regressor(detached), labels.repeat(2, 1))
            loss_reg_value = loss_reg.item()
            check_finite(loss_reg_value, epoch, step, "regressor L1 loss", opt)
            optimizer_regressor.zero_grad(set_to_none=True)
            loss_reg.backward()
            optimizer_regressor.step()

            loss_sum, loss_reg_sum = loss_sum + loss_value, loss_reg_sum + loss_reg_value
            if (step + 1) % opt.print_freq == 0 or step + 1 == len(train_loader):
                log.info(f"Train [{epoch}][{step + 1}/{len(train_loader)}] "
                         f"RnC {loss_value:.4f} (avg {loss_sum / (step + 1):.4f}) "
                         f"L1 {loss_reg_value:.3f} (avg {loss_reg_sum / (step + 1):.3f}) "
                         f"lr {lr:.2e} batch {time.time() - end:.2f}s data {data_time:.2f}s")
            end = time.time()
        if wandb_run is not None:
            wandb_run.log({"train RnC loss": loss_sum / len(train_loader),
                           "train L1": loss_reg_sum / len(train_loader)}, step=epoch)

        resume_state = {"optimizer": optimizer.state_dict(), "optimizer_regressor": optimizer_regressor.state_dict(),
                        "scaler": scaler.state_dict(), "stage": 1}
        end_of_epoch(opt, dist, log, wandb_run, epoch, lr, model, regressor, val_set, amp, best, resume_state,
                     last_best_error=True)

    final_report(opt, dist, log, wandb_run, model, regressor, amp)
    if wandb_run is not None:
        wandb_run.finish()
    cleanup()


if __name__ == "__main__":
    run_main(main)
