"""Rank-N-Contrast (RnC) loss, vectorised.

Definition (Zha et al. 2023, as used by CoReEcho): the 2*bs embeddings are the two views stacked,
z = cat(features[:, 0], features[:, 1]), with the labels repeated the same way. For an anchor i and a positive
j != i, the negatives are every k != i whose label distance to i is at least that of j (ties included, so j
itself is one of them). With the similarity s_ik = -||z_i - z_k||_2 / temperature,

    loss = mean over ordered pairs (i, j), i != j, of
           -log( exp(s_ij) / sum_{k: d_ik >= d_ij, k != i} exp(s_ik) ).

Instead of one pass per positive column, each row is sorted by label distance once: the negative set of a
positive is then a suffix of the sorted row, starting where the positive's tie group starts, so all
denominators come from one reversed cumulative log-sum-exp. Cost: O(n^2 (d + log n)) time and O(n^2 + n d)
memory for n = 2*bs embeddings.
"""
import torch
from torch import nn

LABEL_DIFFS = ("l1",)
FEATURE_SIMS = ("l2",)


class PairwiseL2(torch.autograd.Function):
    """All pairwise Euclidean distances ||z_i - z_k|| of z [n, d] -> [n, n], via matrix products.

    torch.cdist's exact path and its backward loop over the n*n*d differences (slow on CPU);
    the matmul form |a|^2 + |b|^2 - 2ab is fast but cancels badly in float32 for close points.
    So the matmul form runs in float64 on centred points (distances don't change under a shift),
    which keeps float32 results exact to float32 rounding. The hand-written backward uses
    d||z_i - z_k|| / dz_i = (z_i - z_k) / ||z_i - z_k|| (taken as 0 for coincident points, as
    cdist does), again as matmuls instead of an [n, n, d] tensor.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        z64 = z.double()
        z64 = z64 - z64.mean(dim=0)
        sq_norms = (z64 * z64).sum(dim=1)
        dist = (sq_norms[:, None] + sq_norms[None, :] - 2 * z64 @ z64.T).clamp_min_(0).sqrt_()
        ctx.save_for_backward(z64, dist)
        return dist.to(z.dtype)

    @staticmethod
    def backward(ctx, grad_dist: torch.Tensor) -> torch.Tensor:
        z64, dist = ctx.saved_tensors
        weights = torch.where(dist > 0, grad_dist.double() / dist, 0.0)
        weights = weights + weights.T  # z_i appears in row i and in column i
        grad = weights.sum(dim=1, keepdim=True) * z64 - weights @ z64
        return grad.to(grad_dist.dtype)


class RnCLoss(nn.Module):
    def __init__(self, temperature: float = 2, label_diff: str = "l1", feature_sim: str = "l2"):
        super().__init__()
        if label_diff not in LABEL_DIFFS:
            raise ValueError(f"RnCLoss: unknown label_diff {label_diff!r}, expected one of {LABEL_DIFFS}")
        if feature_sim not in FEATURE_SIMS:
            raise ValueError(f"RnCLoss: unknown feature_sim {feature_sim!r}, expected one of {FEATURE_SIMS}")
        if not temperature > 0:
            raise ValueError(f"RnCLoss: temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.label_diff = label_diff
        self.feature_sim = feature_sim

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, label_diff={self.label_diff!r}, feature_sim={self.feature_sim!r}"

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """features [bs, 2, d] (two views per sample), labels [bs, k] or [bs] -> scalar loss."""
        if features.dim() != 3 or features.shape[1] != 2:
            raise ValueError(f"RnCLoss: features must be [bs, 2, d], got {list(features.shape)}")
        if labels.dim() == 1:
            labels = labels[:, None]
        if labels.dim() != 2 or labels.shape[0] != features.shape[0]:
            raise ValueError(
                f"RnCLoss: labels must be [bs, k] with bs={features.shape[0]}, got {list(labels.shape)}"
            )

        if not torch.isfinite(labels).all():
            raise ValueError("RnCLoss: labels contain NaN or inf")

        z = torch.cat([features[:, 0], features[:, 1]], dim=0)  # [n, d]
        y = labels.to(z.device).repeat(2, 1)  # [n, k]

        logits = -PairwiseL2.apply(z) / self.temperature  # [n, n]
        # Label distances (no grad). Labels have few dims, so [n, n, k] is cheap; summing the
        # same way as the definition keeps ties exact.
        label_dist = (y[:, None, :] - y[None, :, :]).abs().sum(dim=-1)

        # Sort every row by label distance, ascending: the negatives of the positive at sorted
        # position p are positions start(p).. end, where start(p) is the first position with the
        # same label distance (its tie group). The anchor itself (distance set to -1) sorts
        # first and is cut off.
        sorted_dist, order = label_dist.fill_diagonal_(-1).sort(dim=1)
        sorted_dist, order = sorted_dist[:, 1:].contiguous(), order[:, 1:]
        sorted_logits = logits.gather(1, order)  # [n, n-1]
        # suffix_lse[:, m] = log sum_{m' >= m} exp(sorted_logits[:, m']), stable for any scale.
        suffix_lse = torch.logcumsumexp(sorted_logits.flip(1), dim=1).flip(1)
        group_start = torch.searchsorted(sorted_dist, sorted_dist, side="left")
        log_denominators = suffix_lse.gather(1, group_start)

        return (log_denominators - sorted_logits).mean()
