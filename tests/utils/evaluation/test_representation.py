"""utils/evaluation/representation.py: representation-quality numbers (distance-EF Spearman, kNN EF MAE, EF-bin
distance ratio) against hand and brute-force values, bad input and formatting."""
import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import spearmanr

import utils.evaluation.representation as rep


# Points on a line whose EF grows with the position; gaps grow too, so no distance ties.
LINE_X = np.array([0.0, 1.0, 3.0, 6.0, 10.0, 15.0, 21.0])


LINE_EF = 20.0 + LINE_X


def _on_a_line(x):
    # Along the first axis, so distances are exact and equal EF gaps stay tied (Spearman exactly 1).
    return np.stack([x, np.full_like(x, 2.0), np.full_like(x, -1.0)], axis=1)


def test_points_ordered_on_a_line():
    embeddings = _on_a_line(LINE_X)
    assert rep.distance_ef_spearman(embeddings, LINE_EF) == pytest.approx(1.0)
    # N = 7, k = 5: the neighbours of each point are all others but its farthest (an end of the line).
    # Predicted EF - 20 per point: 35/5, 34/5, 32/5, 29/5, 25/5, 41/5, 35/5; errors sum to 42.2.
    assert rep.knn_ef_mae(embeddings, LINE_EF) == pytest.approx(42.2 / 7)


def test_metrics_equal_a_brute_force_computation():
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(150, 6))
    ef = 50 + 12 * embeddings[:, 0] + rng.uniform(-10, 10, 150)  # partly ordered by the first axis
    distances, ef_gaps = pdist(embeddings), pdist(ef[:, None])  # pairs i < j
    square = squareform(distances)
    np.fill_diagonal(square, np.inf)
    neighbours = np.argsort(square, axis=1)[:, :5]
    bins = np.floor(ef / 10)
    same = pdist(bins[:, None]) == 0

    metrics = rep.representation_metrics(embeddings, ef)
    assert set(metrics) == {"spearman", "knn_mae", "bin_ratio"}
    assert metrics["spearman"] == pytest.approx(spearmanr(distances, ef_gaps).statistic)
    assert metrics["knn_mae"] == pytest.approx(np.abs(ef[neighbours].mean(axis=1) - ef).mean())
    assert metrics["bin_ratio"] == pytest.approx(distances[same].mean() / distances[~same].mean())
    assert metrics["spearman"] > 0.2 and metrics["bin_ratio"] < 1.0


def test_block_size_does_not_change_the_result(monkeypatch):
    # The distance matrix is built in blocks of rows; 90 rows in blocks of 16 leave a short last block.
    rng = np.random.default_rng(2)
    embeddings, ef = rng.normal(size=(90, 4)), rng.uniform(10, 90, 90)
    whole = rep.representation_metrics(embeddings, ef)
    monkeypatch.setattr(rep, "_BLOCK", 16)
    assert rep.representation_metrics(embeddings, ef) == pytest.approx(whole)


def test_unrelated_embeddings_give_spearman_near_zero():
    rng = np.random.default_rng(3)
    embeddings = _on_a_line(np.arange(200.0))
    ordered_ef = 10 + 0.25 * np.arange(200)  # exact binary steps: equal gaps stay tied
    assert rep.distance_ef_spearman(embeddings, ordered_ef) == pytest.approx(1.0)
    assert abs(rep.distance_ef_spearman(embeddings, rng.permutation(ordered_ef))) < 0.05


def test_spearman_on_sampled_pairs_is_seeded_and_close_to_all_pairs():
    rng = np.random.default_rng(4)
    embeddings = rng.normal(size=(300, 5))
    ef = 50 + 10 * embeddings[:, 0] + rng.normal(0, 5, 300)
    exact = rep.distance_ef_spearman(embeddings, ef)  # 44850 pairs, all of them
    sampled = rep.distance_ef_spearman(embeddings, ef, max_pairs=20000, seed=0)
    assert sampled == rep.distance_ef_spearman(embeddings, ef, max_pairs=20000, seed=0)
    assert sampled != rep.distance_ef_spearman(embeddings, ef, max_pairs=20000, seed=1)
    assert sampled != exact and sampled == pytest.approx(exact, abs=0.03)


def test_knn_leave_one_out_excludes_the_point_but_not_its_duplicate():
    # Two duplicated points at 0 and two at 10 on a line; k = 1, so each point's neighbour is its twin.
    embeddings = _on_a_line(np.array([0.0, 0.0, 10.0, 10.0]))
    ef = np.array([10.0, 20.0, 60.0, 80.0])
    assert rep.knn_ef_mae(embeddings, ef, k=1) == pytest.approx((10 + 10 + 20 + 20) / 4)  # 0 if self counted
    with pytest.raises(ValueError, match="at least 2"):
        rep.knn_ef_mae(embeddings[:1], ef[:1], k=1)


def test_bin_ratio_of_two_well_separated_clusters():
    embeddings = np.array([[0.0, 0.0], [1.0, 0.0], [100.0, 0.0], [101.0, 0.0]])
    ef = np.array([31.0, 35.0, 61.0, 65.0])  # bins [30, 40) and [60, 70)
    # Within: 1, 1. Between: 100, 101, 99, 100.
    assert rep.bin_distance_ratio(embeddings, ef) == pytest.approx(1.0 / 100.0)
    # 50-point bins [0, 50) and [50, 100) split the clusters the same way; one 100-point bin leaves no
    # between-bin pair.
    assert rep.bin_distance_ratio(embeddings, ef, bin_width=50) == pytest.approx(0.01)
    assert np.isnan(rep.bin_distance_ratio(embeddings, ef, bin_width=100))


def test_bad_input_and_formatting():
    with pytest.raises(ValueError, match="N EF labels"):
        rep.representation_metrics(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        rep.representation_metrics(np.full((7, 2), np.nan), np.arange(7.0))
    one = rep.representation_metrics(np.zeros((1, 2)), np.array([55.0]))  # a split of one video: undefined
    assert set(one) == {"spearman", "knn_mae", "bin_ratio"} and all(np.isnan(v) for v in one.values())
    line = rep.format_representation_metrics({"spearman": 0.81234, "knn_mae": 4.5, "bin_ratio": 0.62})
    assert "\n" not in line and "0.812" in line and "4.500" in line and "0.620" in line
