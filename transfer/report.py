"""What transfer_learning.py writes: results.json, predictions.csv, summary.csv, summary.md and plots/, with a
constant baseline (the training fold's mean EF, or its majority class) scored on the same folds."""
import math
from pathlib import Path

import numpy as np
import pandas as pd

from utils.evaluation.metrics import mean_and_sd, scores
from utils.files.atomic import atomic_open, atomic_write_json, atomic_write_text
from utils.pictures.plots import prediction_figure, roc_figure, save_figure

# (key, table header, scale, decimals) of the summary table
TABLE_METRICS = {
    "regression": [("mae", "MAE ↓", 1, 2), ("rmse", "RMSE ↓", 1, 2), ("r2", "R² (%) ↑", 100, 1),
                   ("pearson_r", "Pearson r ↑", 1, 3)],
    "classification": [("accuracy", "Accuracy (%) ↑", 100, 1), ("sensitivity", "Sensitivity (%) ↑", 100, 1),
                       ("specificity", "Specificity (%) ↑", 100, 1), ("f1", "F1 (%) ↑", 100, 1),
                       ("auroc", "AUROC ↑", 1, 3)],
}
PREDICTION_COLUMNS = ["checkpoint", "fold", "video", "patient", "label", "prediction", "probability"]
MODES = {"linear": "a linear head on frozen embeddings", "mlp": "a shallow MLP head on frozen embeddings",
         "finetune": "encoder and head fine-tuned"}


def cell(mean, std, scale, decimals):
    if not math.isfinite(mean):
        return "n/a"
    return f"{scale * mean:.{decimals}f} ± {scale * std:.{decimals}f}"


def markdown_table(rows, task):
    columns = TABLE_METRICS[task]
    lines = ["| Checkpoint | Kind | " + " | ".join(header for _, header, *_ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for label, kind, mean, std in rows:
        lines.append(f"| {label} | {kind} | "
                     + " | ".join(cell(mean[key], std[key], scale, decimals) for key, _, scale, decimals in columns)
                     + " |")
    return "\n".join(lines)


def write_csv(table, path):
    with atomic_open(path, "w") as f:
        table.to_csv(f, index=False, float_format="%.6g")


def fold_scores(exp, outputs):
    """Metrics of every fold's test videos, their mean and SD over the folds, and of all videos pooled."""
    folds = [scores(exp.task, outputs[exp.indices(f.test)], exp.labels[exp.indices(f.test)]) for f in exp.folds]
    mean, std = mean_and_sd(folds, [key for key, *_ in TABLE_METRICS[exp.task]])
    return folds, mean, std, scores(exp.task, outputs, exp.labels)


def checkpoint_report(exp, checkpoint, outputs, fold_seconds, computed, seconds):
    """The checkpoint's entry of results.json."""
    folds, mean, std, pooled = fold_scores(exp, outputs)
    fold_reports = [{"index": f.index, "train_patients": list(f.train), "test_patients": list(f.test),
                     "n_train_videos": len(exp.videos) - len(exp.indices(f.test)),
                     "n_test_videos": len(exp.indices(f.test)), "seconds": round(fold_seconds[f.index], 3),
                     "metrics": metrics} for f, metrics in zip(exp.folds, folds)]
    exp.log.info(f"{checkpoint.label}: done in {seconds:.1f} s; mean over folds: "
                 + "  ".join(f"{key} {mean[key]:.4g}" for key, *_ in TABLE_METRICS[exp.task]))
    weights = checkpoint.weights
    return {"label": checkpoint.label, "spec": weights.spec, "path": weights.path, "kind": weights.kind,
            "epoch": weights.epoch, "mean": mean, "std": std, "pooled": pooled, "seconds": round(seconds, 3),
            "videos_embedded": computed, "folds": fold_reports}


def baseline_outputs(task, train_labels, n):
    """The training fold's mean EF, or its majority class as a probability of 1 or 0."""
    if task == "regression":
        return np.full(n, float(np.mean(train_labels)))
    return np.full(n, float(np.mean(train_labels) >= 0.5))


def baseline_report(exp):
    """The same folds scored by a constant: the training fold's mean EF / majority class."""
    outputs = np.full(len(exp.videos), np.nan)
    for fold in exp.folds:
        test = exp.indices(fold.test)
        outputs[test] = baseline_outputs(exp.task, exp.labels[exp.indices(fold.train)], len(test))
    folds, mean, std, pooled = fold_scores(exp, outputs)
    label = "training-fold mean" if exp.task == "regression" else "majority class"
    return {"label": label, "mean": mean, "std": std, "folds": folds, "pooled": pooled}


def prediction_rows(exp, checkpoint, outputs):
    fold_of = np.full(len(exp.videos), -1)
    for fold in exp.folds:
        fold_of[exp.indices(fold.test)] = fold.index
    classes = exp.task == "classification"
    return [{"checkpoint": checkpoint.label, "fold": int(fold_of[i]), "video": video.name, "patient": video.patient,
             "label": video.label, "prediction": int(outputs[i] >= 0.5) if classes else outputs[i],
             "probability": outputs[i] if classes else None} for i, video in enumerate(exp.videos)]


def summary_rows(exp, reports):
    rows = []
    for report in reports:
        row = {"checkpoint": report["label"], "kind": report["kind"], "spec": report["spec"], "folds": len(exp.folds)}
        for key, *_ in TABLE_METRICS[exp.task]:
            row.update({f"{key}_mean": report["mean"][key], f"{key}_std": report["std"][key],
                        f"{key}_pooled": report["pooled"][key]})
        rows.append(row)
    return pd.DataFrame(rows)


def write_plots(exp, checkpoints, all_outputs):
    plots = Path(exp.opt.output_dir) / "plots"
    for checkpoint, values in zip(checkpoints, all_outputs):
        title = f"{checkpoint.label} ({exp.opt.mode}, {len(exp.folds)} folds)"
        if exp.task == "regression":
            figure = prediction_figure(exp.labels, values, title=title)
            save_figure(figure, plots / f"ef_scatter_{checkpoint.folder}.png")
        else:
            curves = [(f.index, exp.labels[exp.indices(f.test)], values[exp.indices(f.test)]) for f in exp.folds]
            save_figure(roc_figure(curves, exp.labels, values, title), plots / f"roc_{checkpoint.folder}.png")


def write_reports(exp, checkpoints, reports, all_outputs, baseline):
    """results.json, predictions.csv, summary.csv, summary.md and plots/; returns the note and the table."""
    opt, output_dir = exp.opt, Path(exp.opt.output_dir)
    settings = {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(opt).items()}, "task": exp.task,
                "n_videos": len(exp.videos), "n_patients": len(set(exp.patients)), "n_folds": len(exp.folds)}
    results = {"settings": settings,
               "folds": [{"index": f.index, "train_patients": list(f.train), "test_patients": list(f.test)}
                         for f in exp.folds],
               "checkpoints": reports, "baseline": baseline}
    atomic_write_json(results, output_dir / "results.json")  # NaN -> null
    rows = [row for checkpoint, outputs in zip(checkpoints, all_outputs)
            for row in prediction_rows(exp, checkpoint, outputs)]
    write_csv(pd.DataFrame(rows, columns=PREDICTION_COLUMNS), output_dir / "predictions.csv")
    write_csv(summary_rows(exp, reports + [{**baseline, "kind": "baseline", "spec": ""}]), output_dir / "summary.csv")
    table = markdown_table([(r["label"], c.weights.description, r["mean"], r["std"])
                            for r, c in zip(reports, checkpoints)]
                           + [(baseline["label"], "baseline", baseline["mean"], baseline["std"])], exp.task)
    note = f"{exp.summary()}. Mean ± SD over the folds; {MODES[opt.mode]}; {opt.model}, {opt.frames} frames per clip."
    atomic_write_text(f"{note}\n\n{table}\n", output_dir / "summary.md")
    write_plots(exp, checkpoints, all_outputs)
    return note, table
