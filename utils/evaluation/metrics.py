"""EF regression metrics: MAE, RMSE and R² (scikit-learn), as reported in the paper."""
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
