"""Shallow MLP regression head used by CoReEcho on top of the pooled backbone feature."""
import torch.nn as nn

MEAN_EF = 55.6  # mean ejection fraction (%) of EchoNet-Dynamic; starting bias of the regression outputs


def get_shallow_mlp_head(dim_in: int, dim_out: int = 1) -> nn.Sequential:
    """BN -> Dropout -> Linear -> BN -> GELU -> Dropout -> Linear, output bias started at the mean EF.

    Indices 0, 2, 3, 6 hold the state, as in CoReEcho checkpoints' ``regressor`` entry.
    """
    head = nn.Sequential(
        nn.BatchNorm1d(dim_in),
        nn.Dropout(0.4),
        nn.Linear(dim_in, dim_in),
        nn.BatchNorm1d(dim_in),
        nn.GELU(),
        nn.Dropout(0.4),
        nn.Linear(dim_in, dim_out),
    )
    nn.init.constant_(head[-1].bias, MEAN_EF)
    return head
