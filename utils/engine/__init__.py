"""How PyTorch runs: processes and devices under torchrun (`distributed`), mixed precision (`amp`), data loaders
whose batches do not depend on the number of workers and whose workers leave SIGTERM to the main process
(`loaders`), seeds and RNG snapshots (`seed`)."""
