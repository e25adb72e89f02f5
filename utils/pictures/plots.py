"""Figures: predicted-vs-true EF with Bland-Altman, 2-D maps of embeddings coloured by EF (one checkpoint,
or several side by side as in the paper), EF along one video, and Grad-CAM frame strips.

Every embedding map, whether logged to wandb or saved as a PNG, is drawn by `embedding_map`, from the 2-D points
that utils/evaluation/projection.py computes: nothing here computes them.
"""
import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

from utils.files.atomic import atomic_open  # noqa: E402
from utils.evaluation.metrics import regression_metrics  # noqa: E402
from utils.evaluation.projection import METHOD_NAMES  # noqa: E402

EF_CMAP = "viridis"


def save_figure(fig, path, close=True):
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    if close:
        plt.close(fig)


def _r2_text(r2):
    return "R² n/a" if not np.isfinite(r2) else f"R² {100 * r2:.1f} %"


def prediction_figure(true_ef, predicted_ef, title=""):
    """Left: predicted vs. true EF with the identity line, titled with n, MAE and R².
    Right: Bland-Altman (bias, ±1.96 SD)."""
    true_ef = np.asarray(true_ef, dtype=float)
    predicted_ef = np.asarray(predicted_ef, dtype=float)
    metrics = regression_metrics(predicted_ef, true_ef)
    fig, (ax_scatter, ax_ba) = plt.subplots(1, 2, figsize=(11, 5))

    low = min(true_ef.min(), predicted_ef.min(), 0.0)
    high = max(true_ef.max(), predicted_ef.max(), 100.0)
    ax_scatter.scatter(true_ef, predicted_ef, s=10, alpha=0.6)
    ax_scatter.plot([low, high], [low, high], "k--", lw=1, label="identity")
    summary = f"n={true_ef.size}, MAE {metrics['mae']:.2f}, {_r2_text(metrics['r2'])}"
    ax_scatter.set(xlabel="true EF (%)", ylabel="predicted EF (%)", xlim=(low, high), ylim=(low, high),
                   title=f"Predicted vs. true EF {title}".strip() + "\n" + summary)
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


def map_title(method, n, title=None):
    """'t-SNE, <title> (n=N)', or 't-SNE of embeddings (n=N)' without a title."""
    name = METHOD_NAMES[method]
    return f"{name}, {title} (n={n})" if title else f"{name} of embeddings (n={n})"


def _points(points, where):
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{where} draws 2-D points [N, 2] (utils.evaluation.projection.project), "
                         f"got an array of shape {points.shape}")
    return points


def _draw_map(ax, points, ef, title, norm=None):
    scatter = ax.scatter(points[:, 0], points[:, 1], c=np.asarray(ef, dtype=float), cmap=EF_CMAP, norm=norm, s=10)
    ax.set(title=title, xticks=[], yticks=[])
    return scatter


def embedding_map(points, ef, method="tsne", title=None):
    """One 2-D map of projected embeddings `points` [N, 2] (by `method`) coloured by EF, with a colour bar.
    `title` names what is shown (e.g. "test split, stage 1"); the method and n are added:
    "t-SNE, test split, stage 1 (n=1277)"."""
    points = _points(points, "embedding_map")
    fig, ax = plt.subplots(figsize=(6, 5))
    scatter = _draw_map(ax, points, ef, map_title(method, len(points), title))
    fig.colorbar(scatter, ax=ax, label="EF (%)")
    return fig


def embedding_maps(points_by_method, ef, prefix, title=None):
    """{'<prefix> TSNE (ef)': fig, '<prefix> UMAP (ef)': fig}: the released scripts' wandb pictures, one per
    entry of `points_by_method` ({method: points [N, 2]}, e.g. utils.evaluation.projection.projections), each
    drawn by `embedding_map`."""
    return {f"{prefix} {method.upper()} (ef)": embedding_map(points, ef, method, title=title)
            for method, points in points_by_method.items()}


def checkpoint_embedding_figure(checkpoints):
    """The paper's qualitative figure: one row per checkpoint, one map per method (UMAP and t-SNE as the
    paper), all coloured on one EF scale with one shared colour bar.

    `checkpoints`: a sequence of (name, {method: points [N, 2]}, ef [N]); the name titles its row's maps,
    the methods of the first row (in their order) are the columns, and every row has the same ones.
    """
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise ValueError("checkpoint_embedding_figure needs at least one checkpoint")
    methods = list(checkpoints[0][1])
    for name, points_by_method, _ in checkpoints:
        if list(points_by_method) != methods:
            raise ValueError(f"checkpoint {name!r} has maps {list(points_by_method)}, the first row {methods}")
    all_ef = np.concatenate([np.asarray(ef, dtype=float).reshape(-1) for _, _, ef in checkpoints])
    norm = Normalize(vmin=all_ef.min(), vmax=all_ef.max())  # the same colour means the same EF everywhere
    fig, axes = plt.subplots(len(checkpoints), len(methods), figsize=(4.5 * len(methods), 4 * len(checkpoints)),
                             squeeze=False)
    for row, (name, points_by_method, ef) in zip(axes, checkpoints):
        for ax, method in zip(row, methods):
            points = _points(points_by_method[method], "checkpoint_embedding_figure")
            scatter = _draw_map(ax, points, ef, f"{name}: {METHOD_NAMES[method]} (n={len(points)})", norm)
    fig.colorbar(scatter, ax=axes.ravel().tolist(), label="EF (%)")
    return fig


def video_ef_figure(starts, clip_ef, frames, frame_indexes=None, title=None, note=None):
    """EF predicted for each clip of one video against the clip's first frame, with the mean as a dashed
    line, above a strip of a few frames of the video.

    `starts` [n_clips] and `clip_ef` [n_clips]; `frames` [k, H, W] or [k, H, W, 3] uint8 (about 4);
    `frame_indexes` [k] the frames' numbers in the video, for their titles; `note`: a second title line (predict.py
    puts the video's familiarity there).
    """
    starts = np.asarray(starts, dtype=float).reshape(-1)
    clip_ef = np.asarray(clip_ef, dtype=float).reshape(-1)
    if starts.shape != clip_ef.shape or starts.size == 0:
        raise ValueError(f"need one start per clip EF, got {starts.size} starts and {clip_ef.size} EFs")
    frames = np.asarray(frames)
    n_frames = len(frames)
    mean = clip_ef.mean()

    fig = plt.figure(figsize=(max(8.0, 2.2 * n_frames), 6), layout="constrained")
    grid = fig.add_gridspec(2, max(n_frames, 1), height_ratios=(1.3, 1))
    ax_ef = fig.add_subplot(grid[0, :])
    order = np.argsort(starts, kind="stable")
    ax_ef.plot(starts[order], clip_ef[order], "o-", label="clip")
    ax_ef.axhline(mean, color="k", ls="--", lw=1, label=f"mean {mean:.1f} %")
    heading = f"EF per clip ({starts.size} clips, mean {mean:.1f} %)"
    heading = f"{title}: {heading}" if title else heading
    ax_ef.set(xlabel="clip start frame", ylabel="predicted EF (%)", title=f"{heading}\n{note}" if note else heading)
    ax_ef.legend(loc="best", fontsize=8)
    for k, frame in enumerate(frames):
        ax = fig.add_subplot(grid[1, k])
        ax.imshow(frame, cmap="gray" if frame.ndim == 2 else None, vmin=0, vmax=255)
        ax.set(xticks=[], yticks=[], title=f"frame {int(frame_indexes[k])}" if frame_indexes is not None else "")
    return fig


def cam_strip_figure(frames, overlays, frame_indexes, title=None):
    """Two rows of RGB frames [k, H, W, 3] uint8: the clip on top, the Grad-CAM overlay below."""
    n = len(frames)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False, layout="constrained")
    for k in range(n):
        axes[0, k].imshow(frames[k])
        axes[0, k].set_title(f"frame {int(frame_indexes[k])}", fontsize=8)
        axes[1, k].imshow(overlays[k])
        for ax in axes[:, k]:
            ax.set(xticks=[], yticks=[])
    axes[0, 0].set_ylabel("clip")
    axes[1, 0].set_ylabel("Grad-CAM")
    if title:
        fig.suptitle(title)
    return fig


def roc_figure(fold_curves, labels, probabilities, title):
    """ROC curve of every fold (thin; `fold_curves`: (index, labels, probabilities) per fold) and of all folds
    pooled (thick), with the AUROCs."""
    from sklearn.metrics import roc_auc_score, roc_curve  # seconds to import: only when drawn

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for index, fold_labels, fold_probabilities in fold_curves:
        if 0 < np.sum(fold_labels) < len(fold_labels):
            fpr, tpr, _ = roc_curve(fold_labels, fold_probabilities)
            ax.plot(fpr, tpr, lw=1, alpha=0.5,
                    label=f"fold {index} (AUROC {roc_auc_score(fold_labels, fold_probabilities):.3f})")
    fpr, tpr, _ = roc_curve(labels, probabilities)
    ax.plot(fpr, tpr, "k", lw=2.5, label=f"pooled (AUROC {roc_auc_score(labels, probabilities):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=7)
    return fig
