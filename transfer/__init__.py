"""The pieces of transfer_learning.py: `experiment` (checkpoints, the folds and videos they are evaluated on),
`frozen` (linear / mlp heads on cached embeddings), `finetune` (encoder + head per fold, trained with the pieces
of utils.training) and `report` (results.json, tables, predictions, plots)."""
