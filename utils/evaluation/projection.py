"""2-D projections of embeddings for the maps: t-SNE (scikit-learn) or UMAP (umap-learn, optional), with the
released scripts' settings. utils/pictures/plots.py draws the points computed here.
"""
import importlib.util

import numpy as np

METHOD_NAMES = {"tsne": "t-SNE", "umap": "UMAP"}
# The released scripts' settings: t-SNE perplexity 5 and seed 7, UMAP 5 neighbours, random init, seed 0.
DEFAULT_SEEDS = {"tsne": 7, "umap": 0}


def umap_installed():
    try:
        return importlib.util.find_spec("umap") is not None
    except ValueError:  # sys.modules holds None for it: marked as not importable
        return False


def available_methods():
    """t-SNE, plus UMAP when umap-learn is installed (the wandb maps' default)."""
    return ["tsne"] + (["umap"] if umap_installed() else [])


def project(embeddings, method="tsne", seed=None):
    """[N, d] -> [N, 2] by t-SNE (scikit-learn) or UMAP (umap-learn, optional), with the released settings.
    `seed` None takes DEFAULT_SEEDS[method]."""
    if method not in METHOD_NAMES:
        raise ValueError(f"unknown projection {method!r}; choose one of: {', '.join(METHOD_NAMES)}")
    embeddings = np.asarray(embeddings, dtype=np.float32)
    n = len(embeddings)
    seed = DEFAULT_SEEDS[method] if seed is None else seed
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise ImportError("UMAP maps need umap-learn: pip install umap-learn") from None
        # A seed makes UMAP single-threaded anyway; saying so avoids its warning.
        return umap.UMAP(n_components=2, n_neighbors=max(2, min(5, n - 1)), init="random",
                         random_state=seed, n_jobs=1).fit_transform(embeddings)
    from sklearn.manifold import TSNE
    return TSNE(n_components=2, perplexity=max(1.0, min(5.0, n - 1.0)), random_state=seed,
                init="pca").fit_transform(embeddings)


def projections(embeddings, methods=None):
    """{method: points [N, 2]} in the order of `methods` (default: `available_methods()`), each with its
    default seed."""
    methods = available_methods() if methods is None else methods
    return {method: project(embeddings, method) for method in methods}
