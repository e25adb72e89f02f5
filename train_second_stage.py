"""CoReEcho stage 2: MLP probing. The stage-1 encoder is frozen (eval mode, no gradients) and only
the shallow regressor is trained further, with L1 on one augmented clip per video.

    python train_second_stage.py --data_folder EchoNet-Dynamic --pretrained_weights save/<stage-1 run>/best.pth \
        --model uniformer_small --batch_size 16 --frames 36 --frequency 4 --learning_rate 1e-4 \
        --weight_decay 1e-4 --aug --epochs 4 --trial 0
"""
import functools

import torch

from datasets import EchoNet, EchoNetFixedClips
from models import build_model, place_model
from models.options import training_parser
from models.settings import training_settings
from scoring.reference import write_reference
from utils.engine.amp import autocast, prepare_batch
from utils.engine.distributed import wrap_ddp
from utils.engine.seed import set_seed
from utils.script.cli import run_main
from utils.training.report import final_report
from utils.training.resume import resume
from utils.training.run import Run
from utils.training.saver import CheckpointSaver
from utils.training.validation import validate_and_save


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

    set_seed(opt.trial, opt.deterministic)
    run = Run.start(opt, stage=2)
    loader = run.loader(train_set)
    run.log.info(f"Train {len(train_set)} videos ({len(loader)} batches per process), val {len(val_set)} videos")
    run.log.info(f"Loaded {opt.pretrained_weights} (epoch {weights.content.get('epoch')})")
    model.requires_grad_(False)
    if opt.sync_bn and run.dist.enabled:
        regressor = torch.nn.SyncBatchNorm.convert_sync_batchnorm(regressor)
    model = place_model(model, run.device, opt.channels_last)  # eval mode: frozen
    regressor = place_model(regressor, run.device)
    l1_loss = torch.nn.L1Loss()
    optimizer_regressor = torch.optim.AdamW(regressor.parameters(), lr=opt.learning_rate, weight_decay=opt.weight_decay)
    # the regressor trains in fp32: no loss scaler
    saver = CheckpointSaver(run, model, regressor, {"optimizer_regressor": optimizer_regressor},
                            settings=training_settings(opt, stage=2))
    resumed = resume(run, saver, opt.resume)

    regressor = wrap_ddp(regressor, run.dist)  # the frozen encoder needs no DDP
    encode = torch.compile(model) if opt.compile else model

    run.log.info(f"Training the regressor for epochs {resumed.start_epoch}..{opt.epochs} ({opt.epochs + 1} passes in "
                 f"all, as the released scripts loop range(0, epochs + 1)) at lr {opt.learning_rate}; "
                 f"encoder AMP {run.amp or 'off (fp32)'}")
    for epoch in range(resumed.start_epoch, opt.epochs + 1):
        model.eval()  # frozen: BatchNorm statistics stay those of stage 1
        regressor.train()
        meter = run.training_epoch(epoch, loader, opt.learning_rate, resumed, saver)
        for batch in meter:
            images = prepare_batch(batch["image"], run.device, opt.channels_last)
            labels = batch["label"].to(run.device, non_blocking=True)
            with torch.no_grad(), autocast(run.device, run.amp):
                _, embeddings = encode(images)
            loss = l1_loss(regressor(embeddings.float()), labels)
            loss_value = loss.item()
            run.check_finite(loss_value, "regressor L1 loss", meter)
            optimizer_regressor.zero_grad(set_to_none=True)
            loss.backward()
            optimizer_regressor.step()

            meter.update(clips=len(labels) * run.dist.world_size, L1=loss_value)
            run.step_done(meter, saver, opt.save_every_steps)  # the log line; a SIGTERM saves and stops

        validate_and_save(run, saver, meter, model, regressor, val_set)  # best.pth when best, last.pth

    final_report(run, saver, model, regressor, {"test": test_set, "val": val_set, "train": fixed_clips("train")})
    if run.is_main and opt.reference == "auto":  # best.pth's familiarity reference beside it (scoring.reference)
        write_reference(run.path("best.pth"), opt, run.device, run.log)


if __name__ == "__main__":
    run_main(main)
