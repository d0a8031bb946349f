"""Screening metrics: macro scores as OpenGait reports them, plus what screening needs beyond them.

`classification_metrics` gives accuracy and macro precision / recall / F1 (scikit-learn, zero_division 0),
the confusion matrix, per-class sensitivity / specificity and a binary *refer* view (positive + neutral
vs negative). `bootstrap_ci` resamples sequences for 95 % intervals. `flatten_metrics` turns the nested
dict into flat float keys (`val/macro_f1`, `val/sensitivity/positive`) for MLflow and Tune.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from scolio_core import CLASS_NAMES, names

LABELS = list(range(len(CLASS_NAMES)))
NEGATIVE = CLASS_NAMES.index("negative")
CI_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "sensitivity/positive",
              "specificity/negative", "refer/sensitivity", "refer/specificity")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den is 0 (scikit-learn's zero_division=0 convention)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _check(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true, dtype=np.int64).ravel(), np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= len(CLASS_NAMES)):
            raise ValueError(f"{name} holds labels outside {LABELS}: {sorted(set(arr.tolist()) - set(LABELS))}")
    return y_true, y_pred


def _one_vs_rest(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sensitivity and specificity from (..., 3, 3) confusion matrices (rows = truth)."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    actual, predicted = cm.sum(-1), cm.sum(-2)
    total = cm.sum((-2, -1))[..., None]
    tn = total - actual - predicted + tp
    return _ratio(tp, actual), _ratio(tn, total - actual)


def _refer(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Binary refer view (any non-negative class = refer) from (..., 3, 3) confusion matrices."""
    keep = [i for i in LABELS if i != NEGATIVE]
    tn = cm[..., NEGATIVE, NEGATIVE]
    fp = cm[..., NEGATIVE, keep].sum(-1)
    fn = cm[..., keep, NEGATIVE].sum(-1)
    tp = cm[..., keep, :][..., keep].sum((-2, -1))
    precision, sensitivity = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {"sensitivity": sensitivity, "specificity": _ratio(tn, tn + fp), "precision": precision,
            "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def classification_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Accuracy, macro P/R/F1, confusion matrix, per-class sensitivity/specificity and the refer view."""
    y_true, y_pred = _check(y_true, y_pred)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=LABELS, average="macro", zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=LABELS)
    sensitivity, specificity = _one_vs_rest(cm)
    refer = _refer(cm)
    return {
        "n": int(y_true.size),
        "accuracy": float(accuracy_score(y_true, y_pred)) if y_true.size else 0.0,
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "macro_f1": float(f1),
        "confusion_matrix": cm.tolist(),
        "sensitivity": {name: float(sensitivity[i]) for i, name in enumerate(CLASS_NAMES)},
        "specificity": {name: float(specificity[i]) for i, name in enumerate(CLASS_NAMES)},
        "refer": {key: float(value) for key, value in refer.items()},
    }


def _metrics_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """The CI_METRICS of a stack of confusion matrices (R, 3, 3), vectorised for the bootstrap."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    actual, predicted = cm.sum(-1), cm.sum(-2)
    precision, recall = _ratio(tp, predicted), _ratio(tp, actual)
    f1 = _ratio(2 * tp, actual + predicted)
    sensitivity, specificity = _one_vs_rest(cm)
    refer = _refer(cm)
    return {
        "accuracy": _ratio(tp.sum(-1), cm.sum((-2, -1))),
        "macro_precision": precision.mean(-1),
        "macro_recall": recall.mean(-1),
        "macro_f1": f1.mean(-1),
        "sensitivity/positive": sensitivity[..., CLASS_NAMES.index("positive")],
        "specificity/negative": specificity[..., NEGATIVE],
        "refer/sensitivity": refer["sensitivity"],
        "refer/specificity": refer["specificity"],
    }


def metrics_from_confusion(cm: Any) -> dict[str, float]:
    """The CI_METRICS of one confusion matrix (rows = truth, CLASS_NAMES order): what a recorded look keeps.
    Expected (fractional) counts are accepted: benchmarks/ground_truth.py scores a model at another class mix."""
    values = _metrics_from_confusion(np.asarray(cm, dtype=np.float64)[None])
    return {name: float(value[0]) for name, value in values.items()}


def bootstrap_ci(y_true: Any, y_pred: Any, n_resamples: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals over sequences for the headline metrics (CI_METRICS)."""
    y_true, y_pred = _check(y_true, y_pred)
    k = len(CLASS_NAMES)
    if y_true.size == 0:
        return {name: (0.0, 0.0) for name in CI_METRICS}
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, y_true.size, size=(n_resamples, y_true.size))
    # One bincount builds all R confusion matrices: cell (r, t, p) is code r*k*k + t*k + p.
    codes = (np.arange(n_resamples)[:, None] * k * k + y_true[rows] * k + y_pred[rows]).ravel()
    cms = np.bincount(codes, minlength=n_resamples * k * k).reshape(n_resamples, k, k)
    alpha = (1.0 - confidence) / 2.0
    return {name: (float(np.quantile(values, alpha)), float(np.quantile(values, 1.0 - alpha)))
            for name, values in _metrics_from_confusion(cms).items()}


def mean_ci(values: list[float], confidence: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)
            ) -> tuple[float, float, float]:
    """Mean over seeds (training runs) and its t-interval, clipped to the metric's `bounds` (with 3 seeds the
    interval is wide and would otherwise claim F1 above 1); NaN bounds for a single seed: no spread to measure.
    The interval is seed spread only, on fixed evaluation ids (the bootstrap CI is the ids' share)."""
    from scipy import stats

    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    if array.size < 2:
        return mean, float("nan"), float("nan")
    if np.ptp(array) == 0:  # every seed scored the same: no spread (scipy would give NaN)
        return mean, mean, mean
    low, high = stats.t.interval(confidence, array.size - 1, loc=mean, scale=stats.sem(array))
    return mean, max(float(low), bounds[0]), min(float(high), bounds[1])


def probabilities(part_mean_logits: np.ndarray | torch.Tensor, scale: float) -> np.ndarray | torch.Tensor:
    """Class probabilities softmax(scale * part-mean cosine logits), as the CE was trained; (n, 3)."""
    if isinstance(part_mean_logits, torch.Tensor):
        return torch.softmax(scale * part_mean_logits.float(), dim=-1)
    z = scale * np.asarray(part_mean_logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metrics -> flat float keys joined by '/'; the confusion matrix becomes
    `confusion/<true>_as_<predicted>` and intervals `<name>/ci_low`, `<name>/ci_high`."""
    flat: dict[str, float] = {}

    def put(key: str, value: Any) -> None:
        name = f"{prefix}/{key}" if prefix else key
        if isinstance(value, Mapping):
            for sub, item in value.items():
                put(f"{key}/{sub}", item)
        elif key == "confusion_matrix" or key.endswith("/confusion_matrix"):
            base = key[: -len("confusion_matrix")] + names.CONFUSION
            for t, row in enumerate(value):
                for p, count in enumerate(row):
                    put(f"{base}/{CLASS_NAMES[t]}_as_{CLASS_NAMES[p]}", count)
        elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
                isinstance(v, (int, float)) for v in value):
            low, high = names.ci_metrics(name)
            flat[low], flat[high] = float(value[0]), float(value[1])
        elif isinstance(value, (bool, int, float, np.integer, np.floating)):
            flat[name] = float(value)
        else:
            raise TypeError(f"metric {name!r} has a non-numeric value {value!r}")

    for key, value in metrics.items():
        put(str(key), value)
    return flat
