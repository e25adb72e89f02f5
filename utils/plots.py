"""Figures: predicted-vs-true scatter with Bland-Altman, and 2-D maps of embeddings coloured by EF."""
import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.io import atomic_open  # noqa: E402


def save_figure(fig, path, close=True):
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    if close:
        plt.close(fig)


def prediction_figure(true_ef, predicted_ef, title=""):
    """Left: predicted vs. true EF with the identity line. Right: Bland-Altman (bias, ±1.96 SD)."""
    true_ef = np.asarray(true_ef, dtype=float)
    predicted_ef = np.asarray(predicted_ef, dtype=float)
    fig, (ax_scatter, ax_ba) = plt.subplots(1, 2, figsize=(11, 5))

    low = min(true_ef.min(), predicted_ef.min(), 0.0)
    high = max(true_ef.max(), predicted_ef.max(), 100.0)
    ax_scatter.scatter(true_ef, predicted_ef, s=10, alpha=0.6)
    ax_scatter.plot([low, high], [low, high], "k--", lw=1, label="identity")
    ax_scatter.set(xlabel="true EF (%)", ylabel="predicted EF (%)", xlim=(low, high), ylim=(low, high),
                   title=f"Predicted vs. true EF {title}".strip())
    ax_scatter.set_aspect("equal")
    ax_scatter.legend(loc="upper left")

    mean = (true_ef + predicted_ef) / 2
    difference = predicted_ef - true_ef
    bias, spread = difference.mean(), 1.96 * difference.std(ddof=1) if difference.size > 1 else 0.0
    ax_ba.scatter(mean, difference, s=10, alpha=0.6)
    for level, style, label in ((bias, "-", f"bias {bias:.2f}"), (bias + spread, "--", f"+1.96 SD {bias + spread:.2f}"),
                                (bias - spread, "--", f"-1.96 SD {bias - spread:.2f}")):
        ax_ba.axhline(level, color="k", ls=style, lw=1, label=label)
    ax_ba.set(xlabel="mean of predicted and true EF (%)", ylabel="predicted - true EF (%)", title="Bland-Altman")
    ax_ba.legend(loc="upper right", fontsize=8)
    return fig


def embedding_maps(embeddings, ef, prefix):
    """{'<prefix> TSNE (ef)': fig, '<prefix> UMAP (ef)': fig}: the released scripts' wandb pictures
    (UMAP only when umap-learn is installed)."""
    import importlib.util

    methods = ["tsne"] + (["umap"] if importlib.util.find_spec("umap") else [])
    return {f"{prefix} {m.upper()} (ef)": embedding_map(embeddings, ef, m, seed=7 if m == "tsne" else 0)
            for m in methods}


def embedding_map(embeddings, ef, method="tsne", seed=0):
    """2-D projection (t-SNE from scikit-learn, or UMAP when umap-learn is installed) coloured by EF."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    n = len(embeddings)
    if method == "umap":
        import umap  # optional dependency
        points = umap.UMAP(n_components=2, n_neighbors=max(2, min(5, n - 1)), init="random",
                           random_state=seed).fit_transform(embeddings)
    else:
        from sklearn.manifold import TSNE
        points = TSNE(n_components=2, perplexity=max(1.0, min(5.0, n - 1.0)), random_state=seed,
                      init="pca").fit_transform(embeddings)
    fig, ax = plt.subplots(figsize=(6, 5))
    sc = ax.scatter(points[:, 0], points[:, 1], c=np.asarray(ef, dtype=float), cmap="viridis", s=10)
    fig.colorbar(sc, ax=ax, label="EF (%)")
    ax.set(title=f"{method.upper()} of embeddings", xticks=[], yticks=[])
    return fig
