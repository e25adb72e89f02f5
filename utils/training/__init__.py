"""The training run: `Run` (folder, log, checkpoints, resume, validation, final report, speed), the epoch's meter
that iterates the loader and keeps its numbers (`epoch`), and optional wandb logging (`wandb_logger`)."""
