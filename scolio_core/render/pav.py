"""Postural asymmetry vector (PAV) of a pose sequence, and its train-fitted min-max normaliser.

PAV = 8 COCO left/right pairs x 3 metrics, each a per-frame asymmetry after hip-centring and height
normalisation, aggregated over the sequence robustly (values outside the 1.5 IQR fences dropped, then the
mean). Metrics are unsigned: in a 2-D view a person walking towards or away from the camera swaps which
side is image-left, so a sign would encode walking direction rather than posture.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np

from scolio_core.errors import ContractError, DataError

# (left, right) COCO-17 indices: eyes, ears, shoulders, elbows, wrists, hips, knees, ankles.
PAV_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
PAV_PAIR_NAMES = ("eyes", "ears", "shoulders", "elbows", "wrists", "hips", "knees", "ankles")
PAV_METRICS = ("height_difference", "midline_deviation", "tilt")
PAV_SHAPE = (len(PAV_PAIRS), len(PAV_METRICS))
_HIPS = (11, 12)


def _per_frame(poses: np.ndarray) -> np.ndarray:
    """(T, 17, 3) -> (T, 8, 3) per-frame metrics, NaN where a pair (or the frame's hips) is missing."""
    xy = poses[..., :2].astype(np.float64)
    present = (poses[..., 2] > 0) & (xy[..., 0] != 0) & (xy[..., 1] != 0)  # (T, 17)
    nan_xy = np.where(present[..., None], xy, np.nan)
    hip_mid = nan_xy[:, _HIPS].mean(axis=1)  # NaN when a hip is missing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames: NaN height, skipped below
        # Height over the joints present in the frame.
        height = np.nanmax(nan_xy[..., 1], axis=1) - np.nanmin(nan_xy[..., 1], axis=1)
    height = np.where(height > 1e-6, height, np.nan)
    norm = (nan_xy - hip_mid[:, None]) / height[:, None, None]

    left = norm[:, [p[0] for p in PAV_PAIRS]]  # (T, 8, 2)
    right = norm[:, [p[1] for p in PAV_PAIRS]]
    dx, dy = right[..., 0] - left[..., 0], right[..., 1] - left[..., 1]
    height_diff = np.abs(dy)
    midline = np.abs((left[..., 0] + right[..., 0]) / 2)  # hip midpoint is x = 0 after centring
    tilt = np.arctan2(np.abs(dy), np.abs(dx))  # in [0, pi/2], unchanged by swapping left and right
    return np.stack([height_diff, midline, tilt], axis=-1)


def _robust_mean(values: np.ndarray) -> np.ndarray:
    """(T, ...) with NaN for skipped frames -> (...): mean of the values inside the 1.5 IQR fences
    (0 where no frame is usable)."""
    out = np.zeros(values.shape[1:])
    usable = ~np.isnan(values)
    has = usable.any(axis=0)
    if not has.any():
        return out
    q1, q3 = np.nanpercentile(values[:, has], [25, 75], axis=0)
    iqr = q3 - q1
    kept = values[:, has]
    inside = (kept >= q1 - 1.5 * iqr) & (kept <= q3 + 1.5 * iqr)  # NaN compares False
    out[has] = np.where(inside, kept, 0.0).sum(axis=0) / inside.sum(axis=0)
    return out


def compute_pav(poses: np.ndarray) -> np.ndarray:
    """PAV of one sequence: (T, 17, 3) poses (x, y, confidence; missing joints as 0) -> (8, 3) float32.

    Columns: |vertical height difference|, |pair-midpoint x - hip-midpoint x|, tilt angle of the pair's
    line in radians in [0, pi/2]; lengths are in units of the frame's body height (y range of the joints
    present). Frames with a missing joint of a pair (or a missing hip) are skipped for that pair.
    """
    poses = np.asarray(poses)
    if poses.ndim != 3 or poses.shape[1:] != (17, 3):
        raise DataError(f"poses must have shape (T, 17, 3), got {poses.shape}")
    if len(poses) == 0:
        raise DataError("poses hold no frames; a PAV needs at least one")
    return _robust_mean(_per_frame(poses)).astype(np.float32)


class PAVNormalizer:
    """Min-max scaling of PAVs per (pair, metric), fitted on training sequences only.

    Values outside the training range map outside [0, 1] (not clipped); a component constant over the
    training set maps to 0.
    """

    def __init__(self, minimum: np.ndarray | None = None, maximum: np.ndarray | None = None) -> None:
        self.minimum = None if minimum is None else np.asarray(minimum, dtype=np.float64)
        self.maximum = None if maximum is None else np.asarray(maximum, dtype=np.float64)

    @property
    def fitted(self) -> bool:
        return self.minimum is not None and self.maximum is not None

    def fit(self, pavs: np.ndarray) -> "PAVNormalizer":
        pavs = _check_pavs(pavs)
        if len(pavs) == 0:
            raise DataError("cannot fit the PAV normaliser on zero sequences")
        self.minimum, self.maximum = pavs.min(axis=0), pavs.max(axis=0)
        return self

    def transform(self, pavs: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise ContractError("PAVNormalizer is not fitted: call fit() on training PAVs or from_dict()")
        pavs = _check_pavs(pavs)
        span = self.maximum - self.minimum
        safe = np.where(span > 0, span, 1.0)
        return np.where(span > 0, (pavs - self.minimum) / safe, 0.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        if not self.fitted:
            raise ContractError("PAVNormalizer is not fitted; nothing to save")
        return {"min": self.minimum.tolist(), "max": self.maximum.tolist(),
                "pairs": list(PAV_PAIR_NAMES), "metrics": list(PAV_METRICS)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PAVNormalizer":
        try:
            minimum = np.asarray(values["min"], dtype=np.float64)
            maximum = np.asarray(values["max"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"PAV stats must hold 'min' and 'max' as {PAV_SHAPE} number lists ({exc!r})") from None
        for name, array in (("min", minimum), ("max", maximum)):
            if array.shape != PAV_SHAPE or not np.isfinite(array).all():
                raise ContractError(f"PAV stats field {name!r} must be {PAV_SHAPE} finite numbers, "
                                    f"got shape {array.shape}")
        if (minimum > maximum).any():
            raise ContractError("PAV stats have min > max; the stats are corrupt")
        return cls(minimum, maximum)


def _check_pavs(pavs: np.ndarray) -> np.ndarray:
    pavs = np.asarray(pavs, dtype=np.float64)
    if pavs.ndim != 3 or pavs.shape[1:] != PAV_SHAPE:
        raise DataError(f"PAVs must have shape (n, 8, 3), got {pavs.shape}")
    return pavs
