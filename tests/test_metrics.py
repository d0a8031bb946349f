"""Screening metrics agree with scikit-learn; bootstrap intervals; flat keys; probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from scolio_core.training.metrics import (
    CI_METRICS,
    _metrics_from_confusion,
    bootstrap_ci,
    classification_metrics,
    flatten_metrics,
    probabilities,
)


@pytest.fixture
def predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 3, 200))
    return y_true, y_pred


def test_matches_sklearn(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y_true, y_pred = predictions
    m = classification_metrics(y_true, y_pred)
    assert math.isclose(m["accuracy"], accuracy_score(y_true, y_pred))
    assert math.isclose(m["macro_precision"], precision_score(y_true, y_pred, average="macro", zero_division=0))
    assert math.isclose(m["macro_recall"], recall_score(y_true, y_pred, average="macro", zero_division=0))
    assert math.isclose(m["macro_f1"], f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert m["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=[0, 1, 2]).tolist()
    recalls = recall_score(y_true, y_pred, average=None, labels=[0, 1, 2])
    assert np.allclose([m["sensitivity"][c] for c in ("negative", "neutral", "positive")], recalls)
    # specificity of class k = recall of "not k" in the one-vs-rest problem
    for k, name in enumerate(("negative", "neutral", "positive")):
        assert math.isclose(m["specificity"][name], recall_score(y_true != k, y_pred != k))
    refer_true, refer_pred = y_true > 0, y_pred > 0
    assert math.isclose(m["refer"]["sensitivity"], recall_score(refer_true, refer_pred))
    assert math.isclose(m["refer"]["specificity"], recall_score(~refer_true, ~refer_pred))
    assert math.isclose(m["refer"]["precision"], precision_score(refer_true, refer_pred))
    assert math.isclose(m["refer"]["f1"], f1_score(refer_true, refer_pred))


def test_missing_class_uses_zero_division_zero() -> None:
    m = classification_metrics([0, 0, 2, 2], [0, 0, 0, 2])
    assert m["sensitivity"]["neutral"] == 0.0
    assert math.isclose(m["macro_precision"], precision_score([0, 0, 2, 2], [0, 0, 0, 2], labels=[0, 1, 2],
                                                              average="macro", zero_division=0))
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 3], [0, 1])


def test_vectorised_metrics_equal_point_metrics(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y_true, y_pred = predictions
    point = flatten_metrics(classification_metrics(y_true, y_pred))
    fast = _metrics_from_confusion(confusion_matrix(y_true, y_pred, labels=[0, 1, 2])[None])
    for name in CI_METRICS:
        assert math.isclose(float(fast[name][0]), point[name], abs_tol=1e-12), name


def test_bootstrap_ci_contains_point_estimate(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y_true, y_pred = predictions
    point = flatten_metrics(classification_metrics(y_true, y_pred))
    ci = bootstrap_ci(y_true, y_pred, n_resamples=500, seed=1)
    assert set(ci) == set(CI_METRICS)
    for name, (low, high) in ci.items():
        assert low <= point[name] <= high, name
        assert high - low > 0.01  # 200 samples cannot pin a metric down exactly
    assert ci == bootstrap_ci(y_true, y_pred, n_resamples=500, seed=1)


def test_flatten_metrics_keys() -> None:
    flat = flatten_metrics(classification_metrics([0, 1, 2, 2], [0, 2, 2, 2]), "val")
    assert flat["val/macro_f1"] == pytest.approx(f1_score([0, 1, 2, 2], [0, 2, 2, 2], average="macro"))
    assert flat["val/confusion/neutral_as_positive"] == 1.0
    assert flat["val/sensitivity/positive"] == 1.0
    assert flat["val/refer/specificity"] == 1.0
    assert all(isinstance(v, float) for v in flat.values())
    assert flatten_metrics({"acc": (0.1, 0.3)}, "test") == {"test/acc/ci_low": 0.1, "test/acc/ci_high": 0.3}


def test_probabilities() -> None:
    logits = np.array([[0.1, 0.5, -0.2], [0.0, 0.0, 0.0]])
    probs = probabilities(logits, 16.0)
    expected = np.exp(16 * logits) / np.exp(16 * logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-12)
    torch.testing.assert_close(probabilities(torch.tensor(logits, dtype=torch.float32), 16.0),
                               torch.tensor(expected, dtype=torch.float32))
