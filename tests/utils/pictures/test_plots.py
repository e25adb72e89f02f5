"""utils/pictures/plots.py: the prediction figure's title, embedding maps and the per-checkpoint figure (one EF
scale), 2-D points only, and the EF-per-clip figure of a video. Projections are stubbed."""
import numpy as np
import pytest

import utils.evaluation.projection as projection
import utils.pictures.plots as plots
from conftest import fake_projection


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
    monkeypatch.setattr(projection, "project", fake_projection(calls))
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


def test_checkpoint_figure_has_a_umap_and_a_tsne_panel_per_checkpoint(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(projection, "project", fake_projection(calls))
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


def test_maps_take_2d_points():
    ef = np.linspace(20, 80, 6)
    with pytest.raises(ValueError, match=r"embedding_map draws 2-D points \[N, 2\].*shape \(6, 4\)"):
        plots.embedding_map(np.zeros((6, 4)), ef, "tsne")  # embeddings, not projected points
    rows = [("a", {"umap": np.zeros((6, 2)), "tsne": np.zeros((6, 2))}, ef), ("b", {"tsne": np.zeros((6, 2))}, ef)]
    with pytest.raises(ValueError, match=r"checkpoint 'b' has maps \['tsne'\], the first row \['umap', 'tsne'\]"):
        plots.checkpoint_embedding_figure(rows)


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
    noted = plots.video_ef_figure([0], [50.0], frames, title="a.avi", note="second line")
    assert noted.axes[0].get_title() == "a.avi: EF per clip (1 clips, mean 50.0 %)\nsecond line"
