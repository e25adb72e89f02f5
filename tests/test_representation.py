"""Representation-quality metrics against hand and brute-force values, and the embedding / EF figures."""
import os
import sys

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

import utils.evaluation.projection as projection
import utils.pictures.plots as plots
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


# ---------------------------------------------------------------- figures


def _fake_projection(calls):
    def project(embeddings, method="tsne", seed=None):
        calls.append(method)
        return np.asarray(embeddings, dtype=float)[:, :2]
    return project


def test_prediction_figure_title_carries_n_mae_and_r2_percent():
    true_ef = np.array([30.0, 40.0, 50.0, 60.0, 70.0])
    predicted = true_ef + np.array([2.0, -2.0, 2.0, -2.0, 2.0])
    fig = plots.prediction_figure(true_ef, predicted, "(3-clip mean)")
    title = fig.axes[0].get_title()
    # MAE 2; R² = 1 - 20 / 1000 = 98.0 %
    assert "(3-clip mean)" in title and "n=5" in title and "MAE 2.00" in title and "R² 98.0 %" in title
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "Bland-Altman"


def test_embedding_maps_share_embedding_map_and_carry_the_title(monkeypatch):
    calls = []
    monkeypatch.setattr(projection, "project", _fake_projection(calls))
    embeddings, ef = np.random.default_rng(5).normal(size=(12, 4)), np.linspace(20, 80, 12)
    points = projection.projections(embeddings, ["tsne", "umap"])
    figures = plots.embedding_maps(points, ef, "Val", title="val split, stage 1")
    assert list(figures) == ["Val TSNE (ef)", "Val UMAP (ef)"] and calls == ["tsne", "umap"]
    assert figures["Val TSNE (ef)"].axes[0].get_title() == "t-SNE, val split, stage 1 (n=12)"
    assert figures["Val UMAP (ef)"].axes[0].get_title() == "UMAP, val split, stage 1 (n=12)"
    single = plots.embedding_map(points["tsne"], ef, "tsne")
    assert single.axes[0].get_title() == "t-SNE of embeddings (n=12)"
    # scatter and colour bar, with the points where the projection put them
    assert len(single.axes) == 2
    np.testing.assert_allclose(single.axes[0].collections[0].get_offsets(), embeddings[:, :2])


def test_embedding_map_with_real_tsne():
    rng = np.random.default_rng(6)
    # One thread: with torch's and scikit-learn's OpenMP runtimes both loaded on two busy cores, the
    # threads of this 20-point t-SNE can spin for seconds.
    with threadpool_limits(1):
        points = projection.project(rng.normal(size=(20, 8)), "tsne")
    fig = plots.embedding_map(points, rng.uniform(20, 80, 20), "tsne", title="test split")
    assert fig.axes[0].collections[0].get_offsets().shape == (20, 2)
    assert fig.axes[0].get_title() == "t-SNE, test split (n=20)"


def test_checkpoint_figure_has_a_umap_and_a_tsne_panel_per_checkpoint(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(projection, "project", _fake_projection(calls))
    rng = np.random.default_rng(7)
    checkpoints = [(name, projection.projections(rng.normal(size=(15, 3)), ("umap", "tsne")),
                    rng.uniform(low, low + 40, 15)) for name, low in (("epoch 0", 10), ("epoch 10", 20), ("best", 40))]
    fig = plots.checkpoint_embedding_figure(checkpoints)
    assert len(fig.axes) == 3 * 2 + 1  # six maps and one shared colour bar
    titles = [ax.get_title() for ax in fig.axes[:6]]
    assert titles == ["epoch 0: UMAP (n=15)", "epoch 0: t-SNE (n=15)", "epoch 10: UMAP (n=15)",
                      "epoch 10: t-SNE (n=15)", "best: UMAP (n=15)", "best: t-SNE (n=15)"]
    # one EF scale for every panel: from the lowest to the highest EF of all checkpoints
    all_ef = np.concatenate([ef for _, _, ef in checkpoints])
    for ax in fig.axes[:6]:
        assert ax.collections[0].norm.vmin == all_ef.min() and ax.collections[0].norm.vmax == all_ef.max()
    plots.save_figure(fig, tmp_path / "maps.png")
    assert (tmp_path / "maps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_maps_take_2d_points_and_the_default_methods_follow_umap_learn(monkeypatch):
    ef = np.linspace(20, 80, 6)
    with pytest.raises(ValueError, match=r"embedding_map draws 2-D points \[N, 2\].*shape \(6, 4\)"):
        plots.embedding_map(np.zeros((6, 4)), ef, "tsne")  # embeddings, not projected points
    rows = [("a", {"umap": np.zeros((6, 2)), "tsne": np.zeros((6, 2))}, ef), ("b", {"tsne": np.zeros((6, 2))}, ef)]
    with pytest.raises(ValueError, match=r"checkpoint 'b' has maps \['tsne'\], the first row \['umap', 'tsne'\]"):
        plots.checkpoint_embedding_figure(rows)
    calls = []
    monkeypatch.setattr(projection, "project", _fake_projection(calls))
    monkeypatch.setattr(projection, "umap_installed", lambda: True)
    assert list(projection.projections(np.zeros((6, 3)))) == ["tsne", "umap"] and calls == ["tsne", "umap"]
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "umap", None)  # `import umap` fails as if it were not installed
    assert not projection.umap_installed() and projection.available_methods() == ["tsne"]
    with pytest.raises(ValueError, match="unknown projection 'pca'; choose one of: tsne, umap"):
        projection.project(np.zeros((6, 3)), "pca")


def test_video_ef_figure():
    frames = np.random.default_rng(8).integers(0, 256, size=(4, 112, 112), dtype=np.uint8)
    fig = plots.video_ef_figure([0, 40, 80, 120, 160], [50.0, 52.0, 54.0, 56.0, 58.0], frames,
                                frame_indexes=[0, 60, 120, 180], title="0X1A.avi")
    assert len(fig.axes) == 1 + 4
    ax_ef = fig.axes[0]
    assert ax_ef.get_title() == "0X1A.avi: EF per clip (5 clips, mean 54.0 %)"
    clip_line, mean_line = ax_ef.lines[:2]
    np.testing.assert_array_equal(clip_line.get_xdata(), [0, 40, 80, 120, 160])
    np.testing.assert_array_equal(mean_line.get_ydata(), [54.0, 54.0])
    assert [ax.get_title() for ax in fig.axes[1:]] == ["frame 0", "frame 60", "frame 120", "frame 180"]
    with pytest.raises(ValueError, match="one start per clip"):
        plots.video_ef_figure([0, 1], [50.0], frames)


@pytest.mark.skipif(not os.environ.get("COREECHO_TEST_UMAP"),
                    reason="real UMAP costs ~12 s of numba compilation; set COREECHO_TEST_UMAP=1 to run it")
def test_checkpoint_figure_with_real_umap():
    pytest.importorskip("umap")
    rng = np.random.default_rng(9)
    points = projection.projections(rng.normal(size=(25, 8)), ("umap", "tsne"))
    fig = plots.checkpoint_embedding_figure([("best", points, rng.uniform(20, 80, 25))])
    assert len(fig.axes) == 3 and fig.axes[0].collections[0].get_offsets().shape == (25, 2)
