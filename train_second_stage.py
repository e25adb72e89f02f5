"""CoReEcho stage 2: MLP probing. The stage-1 encoder is frozen (eval mode, no gradients) and only
the shallow regressor is trained further, with L1 on one augmented clip per video.

    python train_second_stage.py --data_folder EchoNet-Dynamic --pretrained_weights save/<stage-1 run>/best.pth \
        --model uniformer_small --batch_size 16 --frames 36 --frequency 4 --learning_rate 1e-4 \
        --weight_decay 1e-4 --aug --epochs 4 --trial 0
"""
import functools

import torch

from datasets import EchoNet, EchoNetFixedClips
from models import build_model
from utils.script.cli import run_main
from utils.engine.distributed import wrap_ddp
from models.options import training_parser
from utils.training.run import Run
from utils.engine.amp import autocast, grad_scaler, prepare_batch


def main(argv=None):
    parser = training_parser(stage=2)
    opt = parser.parse_args(argv)
    if not opt.pretrained_weights:
        parser.error("stage 2 needs --pretrained_weights: the best.pth of a stage-1 run")

    # data first: a wrong folder or an unreadable video fails here, before a run folder exists
    train_set = EchoNet(opt.data_folder, "train", opt.frames, opt.frequency, aug=opt.aug, seed=opt.trial,
                        cache_dir=opt.cache_dir)
    fixed_clips = functools.partial(EchoNetFixedClips, opt.data_folder, frames=opt.frames, frequency=opt.frequency,
                                    n_clips=opt.val_n_clips_per_sample, seed=opt.trial, cache_dir=opt.cache_dir)
    val_set = fixed_clips("val")
    test_set = fixed_clips("test")  # scored by the final report: its videos are checked now
    # model: frozen stage-1 encoder, trainable regressor (both loaded from the stage-1 checkpoint)
    model, regressor, weights = build_model(opt.model, opt.pretrained_weights, kinds=("coreecho",),
                                            depthwise=opt.depthwise)
    checkpoint = weights.content

    run = Run.start(opt, stage=2)
    loader = run.loader(train_set)
    run.log.info(f"Train {len(train_set)} videos ({len(loader)} batches per process), val {len(val_set)} videos")
    run.log.info(f"Loaded {opt.pretrained_weights} (epoch {checkpoint.get('epoch')})")
    model.requires_grad_(False)
    if opt.sync_bn and run.dist.enabled:
        regressor = torch.nn.SyncBatchNorm.convert_sync_batchnorm(regressor)
    model, regressor = model.to(run.device).eval(), regressor.to(run.device)
    if opt.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    l1_loss = torch.nn.L1Loss()
    optimizer_regressor = torch.optim.AdamW(regressor.parameters(), lr=opt.learning_rate, weight_decay=opt.weight_decay)
    scaler = grad_scaler(run.device, None)  # the regressor trains in fp32; kept for the checkpoint format
    run.resume(model, regressor, {"optimizer_regressor": optimizer_regressor}, scaler)

    regressor = wrap_ddp(regressor, run.dist)  # the frozen encoder needs no DDP
    encode = torch.compile(model) if opt.compile else model

    run.log.info(f"Training the regressor for epochs {run.start_epoch}..{opt.epochs} ({opt.epochs + 1} passes in all, "
                 f"as the released scripts loop range(0, epochs + 1)) at lr {opt.learning_rate}; "
                 f"encoder AMP {run.amp or 'off (fp32)'}")
    for epoch in range(run.start_epoch, opt.epochs + 1):
        model.eval()  # frozen: BatchNorm statistics stay those of stage 1
        regressor.train()
        meter = run.training_epoch(epoch, loader, opt.learning_rate)
        for batch in meter:
            images = prepare_batch(batch["image"], run.device, opt.channels_last)
            labels = batch["label"].to(run.device, non_blocking=True)
            with torch.no_grad(), autocast(run.device, run.amp):
                _, embeddings = encode(images)
            loss = l1_loss(regressor(embeddings.float()), labels)
            loss_value = loss.item()
            run.check_finite(loss_value, "regressor L1 loss")
            optimizer_regressor.zero_grad(set_to_none=True)
            loss.backward()
            optimizer_regressor.step()
            meter.update(clips=len(labels) * run.dist.world_size, L1=loss_value)

        run.end_epoch(epoch, meter, model, regressor, val_set,
                      {"optimizer_regressor": optimizer_regressor.state_dict(), "scaler": scaler.state_dict()})

    run.finish(model, regressor, {"test": test_set, "val": val_set, "train": fixed_clips("train")})


if __name__ == "__main__":
    run_main(main)
