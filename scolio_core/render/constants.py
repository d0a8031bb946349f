"""Public constants shared by both skeleton-map backends: COCO-17 joints and limbs, which parts each
representation draws, and the grey-level table and tolerance both backends quantise with."""

from __future__ import annotations

import numpy as np

from scolio_core.config import SKELETON_REPRESENTATIONS

NUM_JOINTS = 17
# The 17 COCO limbs in the order OpenGait/PYSKL draw them.
COCO_LIMBS: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (5, 7), (7, 9), (0, 6), (6, 8), (8, 10),
    (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16), (11, 12))
FACE_JOINTS = (0, 1, 2, 3, 4)
HIPS = (11, 12)
SHOULDERS = (5, 6)
# Virtual points appended after the 17 COCO joints (used by head-lite).
HEAD, SHOULDER_MID = 17, 18

BODY_JOINTS = tuple(j for j in range(NUM_JOINTS) if j not in FACE_JOINTS)
BODY_LIMBS = tuple(limb for limb in COCO_LIMBS if not set(limb) & set(FACE_JOINTS))
# representation -> (joints drawn in channel 1, limbs drawn in channel 0)
PARTS: dict[str, tuple[tuple[int, ...], tuple[tuple[int, int], ...]]] = {
    "full-body": (tuple(range(NUM_JOINTS)), COCO_LIMBS),
    "body-only": (BODY_JOINTS, BODY_LIMBS),
    "head-lite": (BODY_JOINTS + (HEAD,), BODY_LIMBS + ((HEAD, SHOULDER_MID),)),
}
assert set(PARTS) == set(SKELETON_REPRESENTATIONS)

# matplotlib's grey map looks levels up in a table of i/255 and multiplies by 255 in float64; the
# truncation to uint8 turns 24 of the 256 levels into the one below. Reproduce the table, not the ideal.
GREY_LUT = ((np.arange(256, dtype=np.float64) * (1.0 / 255.0)) * 255.0).astype(np.uint8)
# Tolerance when truncating resized values to uint8 levels: float32 sums of exact integers may land a
# hair below them, which would otherwise depend on the device's summation order.
LEVEL_EPS = 1e-3
