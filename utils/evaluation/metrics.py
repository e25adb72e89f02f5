"""EF regression metrics: MAE, RMSE and R² (scikit-learn), as reported in the paper; Pearson r and the binary
classification scores of transfer learning (accuracy, sensitivity, specificity, F1, AUROC); means over folds."""
import math

import numpy as np

from utils.script.errors import NonFiniteLossError


def regression_metrics(predictions, labels):
    """Return {'mae', 'rmse', 'r2'} as floats. R² is a fraction (the paper prints it x100)."""
    # imported here: scikit-learn costs seconds at every script start
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if predictions.shape != labels.shape or predictions.size == 0:
        raise ValueError(f"metrics need equally many predictions and labels, got {predictions.size} and {labels.size}")
    bad = int((~np.isfinite(predictions)).sum())
    if bad:
        raise NonFiniteLossError(f"{bad} of {predictions.size} EF predictions are NaN or inf: the model's weights or "
                                 "activations are not finite (with --amp fp16 an overflow: try --amp bf16 or none)")
    return {
        "mae": float(mean_absolute_error(labels, predictions)),
        "rmse": float(root_mean_squared_error(labels, predictions)),
        "r2": float(r2_score(labels, predictions)) if predictions.size > 1 else float("nan"),
    }


def format_metrics(metrics):
    """'MAE 3.900  RMSE 5.130  R² 82.44 %' (R² as a percentage, as the paper prints it)."""
    return f"MAE {metrics['mae']:.3f}  RMSE {metrics['rmse']:.3f}  R² {100 * metrics['r2']:.2f} %"


def pearson_r(predictions, labels):
    """Pearson correlation; NaN when it is undefined (fewer than 2 values, or a constant side)."""
    predictions, labels = np.asarray(predictions, np.float64), np.asarray(labels, np.float64)
    if len(labels) < 2 or np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return math.nan
    return float(np.corrcoef(predictions, labels)[0, 1])


def _ratio(a, b):
    return a / b if b else math.nan


def classification_metrics(probabilities, labels, threshold=0.5):
    """Class-1 probabilities against 0 / 1 labels: accuracy, sensitivity, specificity, f1 (class 1 predicted
    at `threshold` and above), auroc, the cross-entropy `log_loss` and the counts tp, tn, fp, fn. NaN where
    undefined (AUROC of one class, sensitivity without positives, ...)."""
    from sklearn.metrics import roc_auc_score

    outputs, labels = np.asarray(probabilities, np.float64), np.asarray(labels, np.float64)
    predicted, positive = outputs >= threshold, labels == 1
    tp, tn = int((predicted & positive).sum()), int((~predicted & ~positive).sum())
    fp, fn = int((predicted & ~positive).sum()), int((~predicted & positive).sum())
    p = np.clip(outputs, 1e-7, 1 - 1e-7)
    return {"accuracy": _ratio(tp + tn, len(labels)), "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "auroc": float(roc_auc_score(labels, outputs)) if 0 < positive.sum() < len(labels) else math.nan,
            "log_loss": float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))),
            "tp": tp, "tn": tn, "fp": fp, "fn": fn}


def scores(task, outputs, labels):
    """'regression': regression_metrics and pearson_r of EF predictions; 'classification':
    classification_metrics of class-1 probabilities."""
    if task == "regression":
        return {**regression_metrics(outputs, labels), "pearson_r": pearson_r(outputs, labels)}
    return classification_metrics(outputs, labels)


def mean_and_sd(fold_metrics, keys):
    """Mean and sample SD over the folds of each key (folds where it is undefined left out; one fold: SD 0)."""
    mean, sd = {}, {}
    for key in keys:
        values = np.array([m[key] for m in fold_metrics], dtype=np.float64)
        values = values[np.isfinite(values)]
        mean[key] = float(values.mean()) if len(values) else math.nan
        sd[key] = float(values.std(ddof=1)) if len(values) > 1 else (0.0 if len(values) else math.nan)
    return mean, sd
