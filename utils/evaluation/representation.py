"""How well an embedding set E [N, d] is ordered by the EF labels y [N] (distances are Euclidean).

- ``spearman``: Spearman rank correlation between the distance of two embeddings and the absolute EF
  difference of their videos, over all pairs i < j (over `max_pairs` pairs drawn with a fixed seed
  when there are more); 1 means that embedding distance grows exactly with EF difference.
- ``knn_mae``: mean absolute error of predicting each video's EF as the mean EF of its k = 5 nearest
  other embeddings (leave-one-out: a point is never its own neighbour, a duplicate of it is).
- ``bin_ratio``: mean distance over the pairs whose EFs fall in the same bin (bins `bin_width` = 10 EF
  points wide: [0, 10), [10, 20), ...) divided by the mean distance over the pairs in different bins;
  lower means videos of similar EF lie closer together.
"""
import math

import numpy as np
from scipy.stats import spearmanr

MAX_PAIRS = 1_000_000  # all pairs up to N = 1414 (the EchoNet test split has 1277 videos)
_BLOCK = 1024  # rows of the distance matrix held at once: 1024 x N float64


def _check(embeddings, ef, min_n=2):
    embeddings = np.asarray(embeddings, dtype=np.float64)
    ef = np.asarray(ef, dtype=np.float64).reshape(-1)
    if embeddings.ndim != 2 or len(embeddings) != len(ef):
        raise ValueError(f"need embeddings [N, d] and N EF labels, got {embeddings.shape} and {ef.shape}")
    if len(ef) < min_n:
        raise ValueError(f"need at least {min_n} embeddings, got {len(ef)}")
    if not (np.isfinite(embeddings).all() and np.isfinite(ef).all()):
        raise ValueError("embeddings and EF labels must be finite")
    return embeddings, ef


def _distance_rows(embeddings):
    """Yield (first row, rows [b, N] of the Euclidean distance matrix), a block at a time so that
    N x N never sits in memory (the EchoNet train split has 7465 videos)."""
    squared = (embeddings ** 2).sum(axis=1)
    for start in range(0, len(embeddings), _BLOCK):
        block = embeddings[start:start + _BLOCK]
        d2 = squared[start:start + len(block), None] + squared[None, :] - 2.0 * block @ embeddings.T
        yield start, np.sqrt(np.maximum(d2, 0.0))  # rounding can make d2 slightly negative


def _pairs(n, max_pairs, seed):
    """Index arrays (i, j), i < j: every pair, or `max_pairs` pairs drawn uniformly (with replacement)."""
    if n * (n - 1) // 2 <= max_pairs:
        return np.triu_indices(n, k=1)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, max_pairs)
    j = rng.integers(0, n - 1, max_pairs)
    j = j + (j >= i)  # uniform over the n - 1 indices other than i
    return np.minimum(i, j), np.maximum(i, j)


def distance_ef_spearman(embeddings, ef, max_pairs=MAX_PAIRS, seed=0):
    """Spearman correlation of pairwise embedding distance with pairwise |EF difference|.
    NaN when either is constant."""
    embeddings, ef = _check(embeddings, ef)
    i, j = _pairs(len(ef), max_pairs, seed)
    # Chunks keep [pairs, d] differences small for d = 512.
    distances = np.concatenate([np.linalg.norm(embeddings[a] - embeddings[b], axis=1)
                                for a, b in zip(np.array_split(i, 1 + len(i) // 65536),
                                                np.array_split(j, 1 + len(j) // 65536))])
    ef_gaps = np.abs(ef[i] - ef[j])
    if np.ptp(distances) == 0 or np.ptp(ef_gaps) == 0:
        return float("nan")
    return float(spearmanr(distances, ef_gaps).statistic)


def knn_ef_mae(embeddings, ef, k=5):
    """Leave-one-out k-NN regression MAE: each EF predicted by the mean EF of its k nearest other points.
    Exact distance ties at the k-th neighbour are broken arbitrarily (but deterministically)."""
    embeddings, ef = _check(embeddings, ef, min_n=k + 1)
    errors = np.empty(len(ef))
    for start, rows in _distance_rows(embeddings):
        own = np.arange(start, start + len(rows))
        rows[np.arange(len(rows)), own] = np.inf  # by index, so a duplicate point still counts
        neighbours = np.argpartition(rows, k - 1, axis=1)[:, :k]
        errors[own] = np.abs(ef[neighbours].mean(axis=1) - ef[own])
    return float(errors.mean())


def bin_distance_ratio(embeddings, ef, bin_width=10.0):
    """Mean distance of same-EF-bin pairs / mean distance of different-bin pairs (bins floor(EF / width)).
    NaN when either kind of pair is missing."""
    embeddings, ef = _check(embeddings, ef)
    bins = np.floor(ef / bin_width)
    within = between = 0.0
    n_within = n_between = 0
    # Ordered pairs i != j count every pair twice on both sides, which leaves both means unchanged.
    for start, rows in _distance_rows(embeddings):
        own = np.arange(start, start + len(rows))
        same = bins[own, None] == bins[None, :]
        same[np.arange(len(rows)), own] = False  # a point with itself is no pair
        other = bins[own, None] != bins[None, :]
        within += rows[same].sum()
        between += rows[other].sum()
        n_within += int(same.sum())
        n_between += int(other.sum())
    if n_within == 0 or n_between == 0:
        return float("nan")
    return float((within / n_within) / (between / n_between))


def representation_metrics(embeddings, ef, k=5, bin_width=10.0, max_pairs=MAX_PAIRS, seed=0):
    """{'spearman', 'knn_mae', 'bin_ratio'} as floats (definitions in the module docstring). A set of
    k or fewer points uses all the other points as neighbours; a single point leaves all three undefined (NaN)."""
    if len(embeddings) < 2:  # e.g. a validation split of one video: the run goes on, the numbers are undefined
        return {"spearman": math.nan, "knn_mae": math.nan, "bin_ratio": math.nan}
    return {
        "spearman": distance_ef_spearman(embeddings, ef, max_pairs=max_pairs, seed=seed),
        "knn_mae": knn_ef_mae(embeddings, ef, k=min(k, len(embeddings) - 1)),
        "bin_ratio": bin_distance_ratio(embeddings, ef, bin_width=bin_width),
    }


def format_representation_metrics(metrics):
    return (f"distance-EF Spearman {metrics['spearman']:.3f}  kNN MAE {metrics['knn_mae']:.3f}  "
            f"within/between-bin distance {metrics['bin_ratio']:.3f}")
