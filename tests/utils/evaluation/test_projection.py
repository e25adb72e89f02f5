"""utils/evaluation/projection.py: real t-SNE (and, with COREECHO_SLOW_TESTS=1, UMAP) maps of embeddings, and the
default methods following whether umap-learn is installed."""
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import utils.evaluation.projection as projection
import utils.pictures.plots as plots
from conftest import fake_projection


def test_embedding_map_with_real_tsne():
    rng = np.random.default_rng(6)
    # One thread: with torch's and scikit-learn's OpenMP runtimes both loaded on two busy cores, the
    # threads of this 20-point t-SNE can spin for seconds.
    with threadpool_limits(1):
        points = projection.project(rng.normal(size=(20, 8)), "tsne")
    fig = plots.embedding_map(points, rng.uniform(20, 80, 20), "tsne", title="test split")
    assert fig.axes[0].collections[0].get_offsets().shape == (20, 2)
    assert fig.axes[0].get_title() == "t-SNE, test split (n=20)"


def test_default_methods_follow_umap_learn(monkeypatch):
    calls = []
    monkeypatch.setattr(projection, "project", fake_projection(calls))
    monkeypatch.setattr(projection, "umap_installed", lambda: True)
    assert list(projection.projections(np.zeros((6, 3)))) == ["tsne", "umap"] and calls == ["tsne", "umap"]
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "umap", None)  # `import umap` fails as if it were not installed
    assert not projection.umap_installed() and projection.available_methods() == ["tsne"]
    with pytest.raises(ValueError, match="unknown projection 'pca'; choose one of: tsne, umap"):
        projection.project(np.zeros((6, 3)), "pca")


@pytest.mark.slow  # real UMAP: ~12 s of numba compilation
def test_checkpoint_figure_with_real_umap():
    import umap  # noqa: F401  (requirements.txt installs it: a broken install fails, not skips)
    rng = np.random.default_rng(9)
    points = projection.projections(rng.normal(size=(25, 8)), ("umap", "tsne"))
    fig = plots.checkpoint_embedding_figure([("best", points, rng.uniform(20, 80, 25))])
    assert len(fig.axes) == 3 and fig.axes[0].collections[0].get_offsets().shape == (25, 2)
