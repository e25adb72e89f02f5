"""Pieces a training loop calls (the loop stays in the script): `run` (process group, folder, log, wandb, loader,
epoch start), `meter` (one epoch's numbers), `saver` (best.pth / last.pth), `resume` (the resume state, written and
read), `validation` (score and report an epoch), `report` (the final report), `wandb_logger`."""
