"""Everything around the model that the scripts share, one concern per sub-package.

Layers, lowest first; a module imports only from its own layer or the ones below it:

- `utils.script`: plumbing of every command-line script: user errors, logging, argument parsing, the entry
  point that turns errors, Ctrl-C and SIGTERM into one line.
- `utils.files`: what is written and read: atomic writes, checkpoints in the released format, weights by name
  (`hf://`), embeddings files, a file's identity for caches and resumed runs.
- `utils.engine`: how PyTorch runs: processes under torchrun, mixed precision, data loaders, seeds and RNG states.
- `utils.evaluation`: from clips to numbers: batched inference, metrics, representation numbers, embedding
  projections (t-SNE / UMAP), Grad-CAM, cross-validation folds.
- `utils.pictures`: figures and videos drawn from those numbers (never computed here).
- `utils.training`: the pieces a training loop calls, one job each (the run's set-up, the epoch meter, the
  checkpoint saver, the resume state, validation, the report); the loop itself stays in the script.
"""
