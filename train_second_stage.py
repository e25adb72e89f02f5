"""CoReEcho stage 2: MLP probing. The stage-1 encoder is frozen (eval mode, no gradients) and only
the shallow regressor is trained further, with L1 on one augmented clip per video.

    python train_second_stage.py --data_folder EchoNet-Dynamic --pretrained_weights save/<stage-1 run>/best.pth \
        --model uniformer_small --batch_size 16 --frames 36 --frequency 4 --learning_rate 1e-4 \
        --weight_decay 1e-4 --aug --epochs 4 --trial 0
"""
import time

import torch

from datasets import EchoNet
from models import get_feature_extractor, get_shallow_mlp_head
from utils.checkpoint import load_model_and_regressor
from utils.cli import run_main
from utils.distributed import cleanup, wrap_ddp
from utils.options import training_parser
from utils.runtime import amp_dtype, autocast, batches, grad_scaler, prepare_batch
from utils.training import (check_finite, end_of_epoch, eval_dataset, final_report, maybe_resume, progress,
                            setup_run, training_loader)


def main(argv=None):
    opt = training_parser(stage=2).parse_args(argv)
    if not opt.pretrained_weights:
        raise ValueError("stage 2 needs --pretrained_weights: the best.pth of a stage-1 run")
    dist, log, wandb_run = setup_run(opt, stage=2)
    amp = amp_dtype(opt.amp, dist.device)

    # data: one (augmented) clip per video
    train_set = EchoNet(opt.data_folder, "train", opt.frames, opt.frequency, aug=opt.aug, seed=opt.trial,
                        cache_dir=opt.cache_dir)
    val_set = eval_dataset(opt, "val")
    train_loader = training_loader(opt, dist, train_set)
    log.info(f"Train {len(train_set)} videos ({len(train_loader)} batches per process), val {len(val_set)} videos")

    # model: frozen stage-1 encoder, trainable regressor (both loaded from the stage-1 checkpoint)
    model = get_feature_extractor(opt.model, None)
    regressor = get_shallow_mlp_head(model.head.in_features, 1)
    checkpoint = load_model_and_regressor(opt.pretrained_weights, model, regressor)
    log.info(f"Loaded {opt.pretrained_weights} (epoch {checkpoint.get('epoch')})")
    model.requires_grad_(False)
    if opt.sync_bn and dist.enabled:
        regressor = torch.nn.SyncBatchNorm.convert_sync_batchnorm(regressor)
    model, regressor = model.to(dist.device).eval(), regressor.to(dist.device)
    if opt.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    l1_loss = torch.nn.L1Loss()
    optimizer_regressor = torch.optim.AdamW(regressor.parameters(), lr=opt.learning_rate, weight_decay=opt.weight_decay)
    scaler = grad_scaler(dist.device, None)  # the regressor trains in fp32; kept for the checkpoint format

    optimizers = {"optimizer_regressor": optimizer_regressor}
    start_epoch, best = maybe_resume(opt, model, regressor, optimizers, scaler, log)

    regressor = wrap_ddp(regressor, dist)  # the frozen encoder needs no DDP
    encode = torch.compile(model) if opt.compile else model

    log.info(f"Training the regressor for epochs {start_epoch}..{opt.epochs} ({opt.epochs + 1} passes in all, "
             f"as the released scripts loop range(0, epochs + 1)) at lr {opt.learning_rate}")
    for epoch in range(start_epoch, opt.epochs + 1):
        train_loader.sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        model.eval()  # frozen: BatchNorm statistics stay those of stage 1
        regressor.train()
        loss_sum = 0.0
        end = time.time()
        for step, batch in enumerate(progress(dist, f"epoch {epoch}")(batches(train_loader), len(train_loader))):
            data_time = time.time() - end
            images = prepare_batch(batch["image"], dist.device, opt.channels_last)
            labels = batch["label"].to(dist.device, non_blocking=True)
            with torch.no_grad(), autocast(dist.device, amp):
                _, embeddings = encode(images)
            loss = l1_loss(regressor(embeddings.float()), labels)
            loss_value = loss.item()
            check_finite(loss_value, epoch, step, "regressor L1 loss", opt)
            optimizer_regressor.zero_grad(set_to_none=True)
            loss.backward()
            optimizer_regressor.step()

            loss_sum += loss_value
            if (step + 1) % opt.print_freq == 0 or step + 1 == len(train_loader):
                log.info(f"Train [{epoch}][{step + 1}/{len(train_loader)}] L1 {loss_value:.3f} "
                         f"(avg {loss_sum / (step + 1):.3f}) batch {time.time() - end:.2f}s data {data_time:.2f}s")
            end = time.time()
        if wandb_run is not None:
            wandb_run.log({"train L1": loss_sum / len(train_loader)}, step=epoch)

        resume_state = {"optimizer_regressor": optimizer_regressor.state_dict(), "scaler": scaler.state_dict(),
                        "stage": 2}
        # As released, stage 2's last.pth stores best_error None (the resume state keeps the real value).
        end_of_epoch(opt, dist, log, wandb_run, epoch, opt.learning_rate, model, regressor, val_set, amp, best,
                     resume_state, last_best_error=False)

    final_report(opt, dist, log, wandb_run, model, regressor, amp)
    if wandb_run is not None:
        wandb_run.finish()
    cleanup()


if __name__ == "__main__":
    run_main(main)
