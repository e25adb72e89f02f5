"""utils/evaluation/metrics.py: classification and regression scores of small examples worked out by hand (the
numbers are typed here), cross-checked with scikit-learn and scipy where they define the same score."""
import math

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import log_loss, roc_auc_score

from utils.evaluation.metrics import (classification_metrics, format_metrics, mean_and_sd, pearson_r,
                                      regression_metrics, scores)

# EF predictions and truths: errors 10, 0, -10, -5
PREDICTED, TRUE = [50.0, 60.0, 70.0, 45.0], [40.0, 60.0, 80.0, 50.0]


def test_regression_metrics_of_a_known_example():
    metrics = regression_metrics(PREDICTED, TRUE)
    assert set(metrics) == {"mae", "rmse", "r2"}
    assert metrics["mae"] == pytest.approx(25 / 4)  # (10 + 0 + 10 + 5) / 4
    assert metrics["rmse"] == pytest.approx(7.5)  # sqrt((100 + 0 + 100 + 25) / 4)
    # truth mean 57.5: total sum of squares 17.5² + 2.5² + 22.5² + 7.5² = 875; residual 225
    assert metrics["r2"] == pytest.approx(1 - 225 / 875) == pytest.approx(26 / 35)
    assert format_metrics(metrics) == "MAE 6.250  RMSE 7.500  R² 74.29 %"
    # a worse-than-the-mean model has a negative R² (not clipped at 0): residual 4 x 20² against 875
    assert regression_metrics([60.0, 40.0, 100.0, 30.0], TRUE)["r2"] == pytest.approx(1 - 1600 / 875)
    assert math.isnan(regression_metrics([50.0], [40.0])["r2"])  # undefined for one video


def test_pearson_r_of_a_known_example():
    # deviations from the means 56.25 and 57.5: sum of products 512.5, sums of squares 368.75 and 875
    assert pearson_r(PREDICTED, TRUE) == pytest.approx(512.5 / math.sqrt(368.75 * 875)) == pytest.approx(0.902244,
                                                                                                           abs=1e-6)
    assert pearson_r(PREDICTED, TRUE) == pytest.approx(pearsonr(PREDICTED, TRUE).statistic)
    assert pearson_r([50, 60, 70], [70, 60, 50]) == pytest.approx(-1.0)
    assert math.isnan(pearson_r([55, 55, 55], [40, 60, 80])) and math.isnan(pearson_r([55], [40]))


def test_classification_metrics_of_a_known_example():
    probabilities, labels = [0.9, 0.6, 0.4, 0.2, 0.7], [1, 1, 1, 0, 0]
    metrics = classification_metrics(probabilities, labels)
    # at 0.5: positives 0.9, 0.6 found, 0.4 missed; negative 0.2 rejected, 0.7 accepted
    assert (metrics["tp"], metrics["fn"], metrics["tn"], metrics["fp"]) == (2, 1, 1, 1)
    assert metrics["accuracy"] == pytest.approx(3 / 5) and metrics["sensitivity"] == pytest.approx(2 / 3)
    assert metrics["specificity"] == pytest.approx(1 / 2) and metrics["f1"] == pytest.approx(4 / 6)
    assert metrics["auroc"] == pytest.approx(4 / 6)  # 4 of the 6 (positive, negative) pairs ranked right
    assert metrics["auroc"] == pytest.approx(roc_auc_score(labels, probabilities))
    expected_loss = -(math.log(0.9) + math.log(0.6) + math.log(0.4) + math.log(0.8) + math.log(0.3)) / 5
    assert metrics["log_loss"] == pytest.approx(expected_loss) == pytest.approx(0.591919, abs=1e-6)
    assert metrics["log_loss"] == pytest.approx(log_loss(labels, probabilities))
    assert scores("classification", probabilities, labels) == metrics


def test_classification_threshold_ties_and_undefined_scores():
    # 0.5 is predicted positive ("at the threshold and above"); a tied pair counts half in the AUROC
    metrics = classification_metrics([0.5, 0.5, 0.8, 0.1], [1, 0, 1, 0])
    assert (metrics["tp"], metrics["fn"], metrics["tn"], metrics["fp"]) == (2, 0, 1, 1)
    assert metrics["auroc"] == pytest.approx(3.5 / 4) == pytest.approx(roc_auc_score([1, 0, 1, 0],
                                                                                     [0.5, 0.5, 0.8, 0.1]))
    assert classification_metrics([0.2, 0.7], [1, 1], threshold=0.75)["tp"] == 0
    negatives_only = classification_metrics([0.2, 0.7], [0, 0])
    assert math.isnan(negatives_only["auroc"]) and math.isnan(negatives_only["sensitivity"])
    assert negatives_only["specificity"] == pytest.approx(1 / 2) and negatives_only["f1"] == 0.0


def test_regression_scores_add_pearson_r():
    regression = scores("regression", [50, 60, 70], [40, 60, 80])
    assert regression["mae"] == pytest.approx(20 / 3) and regression["rmse"] == pytest.approx(math.sqrt(200 / 3))
    assert regression["r2"] == pytest.approx(1 - 200 / 800) and regression["pearson_r"] == pytest.approx(1.0)
    assert np.isnan(scores("regression", [55, 55, 55], [40, 60, 80])["pearson_r"])


def test_mean_and_sd_over_folds_skip_undefined_values():
    folds = [{"mae": 2.0, "r2": float("nan")}, {"mae": 4.0, "r2": 0.5}, {"mae": 9.0, "r2": 0.7}]
    mean, sd = mean_and_sd(folds, ["mae", "r2"])
    assert mean == pytest.approx({"mae": 5.0, "r2": 0.6})
    # sample SD: deviations -3, -1, 4 -> sqrt(26 / 2); and 0.1, 0.1 -> sqrt(0.02 / 1)
    assert sd == pytest.approx({"mae": math.sqrt(13), "r2": math.sqrt(0.02)})
    one = mean_and_sd([{"mae": 3.0}], ["mae"])
    assert one == ({"mae": 3.0}, {"mae": 0.0})
    none = mean_and_sd([{"auroc": float("nan")}], ["auroc"])
    assert math.isnan(none[0]["auroc"]) and math.isnan(none[1]["auroc"])
