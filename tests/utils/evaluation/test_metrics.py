"""utils/evaluation/metrics.py: classification and regression scores of a small example worked out by hand."""
import numpy as np
import pytest

from utils.evaluation.metrics import scores


def test_scores_of_a_known_example():
    metrics = scores("classification", [0.9, 0.6, 0.4, 0.2, 0.7], [1, 1, 1, 0, 0])
    assert (metrics["tp"], metrics["fn"], metrics["tn"], metrics["fp"]) == (2, 1, 1, 1)
    assert metrics["accuracy"] == pytest.approx(3 / 5) and metrics["sensitivity"] == pytest.approx(2 / 3)
    assert metrics["specificity"] == pytest.approx(1 / 2) and metrics["f1"] == pytest.approx(4 / 6)
    assert metrics["auroc"] == pytest.approx(4 / 6)  # 4 of the 6 (positive, negative) pairs ranked right
    regression = scores("regression", [50, 60, 70], [40, 60, 80])
    assert regression["mae"] == pytest.approx(20 / 3) and regression["pearson_r"] == pytest.approx(1.0)
    assert np.isnan(scores("regression", [55, 55, 55], [40, 60, 80])["pearson_r"])
