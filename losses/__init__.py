"""Losses: Rank-N-Contrast (`rnc.RnCLoss`), the contrastive loss that orders stage 1's embeddings by EF."""
from .rnc import RnCLoss

__all__ = ["RnCLoss"]
