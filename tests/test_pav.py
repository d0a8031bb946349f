"""PAV invariances, symmetric/asymmetric poses, missing joints, robust aggregation, and the normaliser."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scolio_core.errors import ContractError, DataError
from scolio_core.render.pav import PAV_SHAPE, PAVNormalizer, compute_pav

SHOULDERS = 2  # row of the shoulder pair in the PAV
HEIGHT, MIDLINE, TILT = 0, 1, 2

# Right-side half of a symmetric person (x offset from the body midline, y), COCO left/right pairs
# share y and mirror x; nose on the midline.
_HALF = {1: (4, 96), 3: (9, 99), 5: (16, 122), 7: (22, 150), 9: (25, 176), 11: (10, 182), 13: (12, 212),
         15: (13, 238)}


def symmetric_pose(frames: int = 12, seed: int = 0, jitter: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pose = np.zeros((17, 3))
    pose[0] = (250, 100, 0.9)
    for left, (dx, y) in _HALF.items():
        pose[left] = (250 + dx, y, 0.9)
        pose[left + 1] = (250 - dx, y, 0.9)
    poses = np.repeat(pose[None], frames, axis=0)
    poses[..., :2] += rng.normal(0, jitter, (frames, 17, 2)) if jitter else 0
    return poses


def test_mirror_symmetric_pose_gives_near_zero_pav() -> None:
    pav = compute_pav(symmetric_pose())
    assert pav.shape == PAV_SHAPE and pav.dtype == np.float32
    np.testing.assert_allclose(pav, 0.0, atol=1e-6)


def test_tilted_shoulders_are_asymmetric() -> None:
    poses = symmetric_pose()
    poses[:, 5, 1] -= 8  # left shoulder raised by 8 px on a ~140 px tall person
    pav = compute_pav(poses)
    height = 238 - 96
    assert pav[SHOULDERS, HEIGHT] == pytest.approx(8 / height, rel=1e-4)
    assert pav[SHOULDERS, TILT] == pytest.approx(np.arctan2(8, 32), rel=1e-4)
    others = np.delete(pav, SHOULDERS, axis=0)
    np.testing.assert_allclose(others, 0.0, atol=1e-6)
    # Swapping which side is called left (a person walking the other way) cannot change it.
    swapped = poses.copy()
    swapped[:, [5, 6]] = poses[:, [6, 5]]
    np.testing.assert_allclose(compute_pav(swapped), pav, atol=1e-6)


def test_pav_invariant_to_translation_and_scale() -> None:
    poses = symmetric_pose(jitter=3.0, seed=1)
    poses[:, 5, 1] -= 6
    poses[:, 9, 0] += 5
    moved = poses.copy()
    moved[..., :2] = poses[..., :2] * 2.5 + np.array([-300.0, 71.0])
    np.testing.assert_allclose(compute_pav(moved), compute_pav(poses), rtol=1e-4, atol=1e-6)


def test_missing_joints_skip_frames_per_pair_and_outliers_are_filtered() -> None:
    poses = symmetric_pose(frames=20, jitter=1.0, seed=2)
    base = compute_pav(poses)
    spoiled = poses.copy()
    spoiled[3, 6] = 0.0  # right shoulder missing (stored as 0): that frame is skipped for shoulders
    spoiled[4, 7, 2] = 0.0  # left elbow undetected (confidence 0)
    pav = compute_pav(spoiled)
    keep = np.ones(20, bool)
    keep[3] = False
    assert pav[SHOULDERS] == pytest.approx(compute_pav(poses[keep])[SHOULDERS], rel=1e-5)
    assert np.isfinite(pav).all()
    # One wild frame (a detector glitch) is dropped by the IQR fence instead of dragging the mean.
    glitch = poses.copy()
    glitch[10, 5, 1] -= 60
    assert compute_pav(glitch)[SHOULDERS, HEIGHT] == pytest.approx(compute_pav(poses[np.arange(20) != 10])[SHOULDERS, HEIGHT], rel=1e-5)
    assert compute_pav(glitch)[SHOULDERS, HEIGHT] < 5 * max(base[SHOULDERS, HEIGHT], 1e-3)
    # No usable frame for a pair: 0, not NaN.
    no_eyes = poses.copy()
    no_eyes[:, 1:3] = 0.0
    assert compute_pav(no_eyes)[0].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(DataError, match=r"\(T, 17, 3\)"):
        compute_pav(np.zeros((5, 17, 2)))


def test_normalizer_uses_only_what_it_is_fitted_on_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    train = rng.uniform(0.0, 0.2, (30, *PAV_SHAPE))
    train[:, 0, 0] = 0.05  # constant component -> 0
    test = rng.uniform(0.0, 1.0, (10, *PAV_SHAPE))
    norm = PAVNormalizer().fit(train)
    np.testing.assert_array_equal(norm.minimum, train.min(axis=0))
    np.testing.assert_array_equal(norm.maximum, train.max(axis=0))
    scaled = norm.transform(train)
    assert scaled.min() == 0.0 and scaled.max() == pytest.approx(1.0)
    assert (norm.transform(test)[:, 0, 0] == 0.0).all()
    assert norm.transform(test).max() > 1.0  # test values outside the train range are not refitted
    restored = PAVNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(restored.transform(test), norm.transform(test))
    with pytest.raises(ContractError, match="not fitted"):
        PAVNormalizer().transform(test)
    with pytest.raises(ContractError, match="'min'"):
        PAVNormalizer.from_dict({"min": [[0.0] * 3] * 7, "max": norm.to_dict()["max"]})
    with pytest.raises(DataError, match=r"\(n, 8, 3\)"):
        norm.fit(np.zeros((4, 8, 2)))
