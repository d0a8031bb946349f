"""Missing-joint imputation at load time (OpenGait's pretreatment step (a), see `skeleton.py`)."""

from __future__ import annotations

import numpy as np
from sklearn.impute import KNNImputer

from scolio_core.errors import ConfigError, DataError
from scolio_core.render.constants import NUM_JOINTS


def impute_missing(poses: np.ndarray, k: int = 4) -> np.ndarray:
    """Fill coordinates stored as exactly 0 by kNN over the frames of one sequence.

    Distance-weighted k nearest frames on the flattened (T, 34) coordinates, as OpenGait's pretreatment
    does; confidences are returned unchanged (so imputed joints keep their 0 confidence). A coordinate
    missing in every frame stays 0 (OpenGait would silently skip imputing the whole sequence then).
    """
    poses = np.asarray(poses)
    if poses.ndim != 3 or poses.shape[1:] != (NUM_JOINTS, 3):
        raise DataError(f"poses must have shape (T, 17, 3), got {poses.shape}")
    if k < 1:
        raise ConfigError(f"input.impute_neighbors must be >= 1, got {k}")
    out = poses.astype(np.float32, copy=True)
    coords = poses[..., :2].reshape(len(poses), -1).astype(np.float64)
    missing = coords == 0
    if not missing.any() or missing.all():
        return out
    coords[missing] = np.nan
    imputer = KNNImputer(n_neighbors=k, weights="distance", keep_empty_features=True)
    filled = imputer.fit_transform(coords)
    out[..., :2] = filled.reshape(len(poses), NUM_JOINTS, 2)
    return out
