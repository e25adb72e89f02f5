"""The training run: `Run` (folder, log, checkpoints, resume, validation, final report, speed) and optional
wandb logging (`wandb_logger`)."""
