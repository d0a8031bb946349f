"""Synthetic Scoliosis1K stand-in, written in exactly the real release layout.

The real release is licence-gated, so demos and tests use this: 2D COCO-17 walking sequences seen from the
front/back (the release's 000_180 view) and silhouettes rendered from the same bodies, plus an
OpenGait-style partition JSON. Each sequence's class comes from a latent severity `s` that drives postural
asymmetry (shoulder height difference, pelvic tilt, lateral trunk shift); labels are thresholds on a *noisy*
copy of `s`, so classes overlap and neutral is genuinely hard. Class-independent nuisance (head tilt,
arm-swing asymmetry, camera roll) makes representation choices matter.

    from scolio_core.data.synth import synthesize
    summary = synthesize("data/synth", num_sequences=300, frames=40)   # or: scolio synth data/synth
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from tqdm import tqdm

from scolio_core import CLASS_NAMES
from scolio_core.config import DataConfig
from scolio_core.data.bounded import load_json_bounded
from scolio_core.errors import ConfigError, DataError

GENERATOR_VERSION = 1
VIEW = "000_180"
IMAGE_WIDTH, IMAGE_HEIGHT = 1280, 720
FOCAL_PX = 1100.0
PRINCIPAL = (640.0, 340.0)
CAMERA_HEIGHT_M = 1.0
FPS = 30.0
NEAR_M, FAR_M = 4.0, 8.0  # walkers turn around at these camera distances
SIL_SIZE = 64

# Release shape (1:1:8 split; DOMAIN.md): class totals and the share of ids in TRAIN_SET.
RELEASE_TOTALS = {"negative": 800, "neutral": 200, "positive": 493}
RELEASE_TRAIN_FRACTION = 744 / 1493
MIN_TRAIN_PER_CLASS = 6  # a stratified 15 % validation carve still sees every class
MIN_TEST_PER_CLASS = 3
MIN_SEQUENCES = 3 * (MIN_TRAIN_PER_CLASS + MIN_TEST_PER_CLASS) + 3

# Latent severity: population Beta(a, b); label = thresholds on severity + N(0, LABEL_NOISE).
SEVERITY_BETA = (1.3, 2.2)
SEVERITY_THRESHOLDS = (0.25, 0.45)  # negative | neutral | positive
LABEL_NOISE = 0.06
# Asymmetry at severity 1, in body heights. Deliberately about 3x what screening sees, so that the CPU
# profiles' small models on 32-row maps can pick it up within minutes; class overlap (and so the oracle
# ceiling) comes from LABEL_NOISE, not from these amplitudes.
SHOULDER_DROP = 0.15
PELVIC_TILT = 0.06
TRUNK_SHIFT = 0.09

# Standing COCO-17 template in body heights: X to the person's left, Y up from the ground, Z forward.
_TEMPLATE = np.array([
    [0.000, 0.935, 0.055],                          # 0 nose
    [0.030, 0.955, 0.045], [-0.030, 0.955, 0.045],  # 1, 2 eyes (left, right)
    [0.068, 0.945, 0.000], [-0.068, 0.945, 0.000],  # 3, 4 ears
    [0.115, 0.820, 0.000], [-0.115, 0.820, 0.000],  # 5, 6 shoulders
    [0.130, 0.630, 0.000], [-0.130, 0.630, 0.000],  # 7, 8 elbows
    [0.130, 0.460, 0.020], [-0.130, 0.460, 0.020],  # 9, 10 wrists
    [0.085, 0.530, 0.000], [-0.085, 0.530, 0.000],  # 11, 12 hips
    [0.080, 0.285, 0.010], [-0.080, 0.285, 0.010],  # 13, 14 knees
    [0.075, 0.045, 0.000], [-0.075, 0.045, 0.000],  # 15, 16 ankles
])
FACE = [0, 1, 2, 3, 4]
LEFT_ARM, RIGHT_ARM = [5, 7, 9], [6, 8, 10]
LEGS = [11, 12, 13, 14, 15, 16]
# Pose-estimator behaviour per joint: confidence facing the camera / facing away, noise (body heights), drops.
_BODY_CONF = [.93] * 2 + [.90] * 2 + [.85] * 2 + [.88] * 2 + [.90] * 2 + [.87] * 2
_CONF_FRONT = np.array([.90, .92, .92, .72, .72] + _BODY_CONF)
_CONF_BACK = np.array([.25, .20, .20, .65, .65] + _BODY_CONF)
_NOISE = 0.004 * np.array([.8] * 5 + [1.0] * 4 + [1.5] * 2 + [1.2] * 2 + [1.0] * 2 + [1.5] * 2)
_DROP_P = np.array([.015] * 5 + [.004] * 4 + [.02] * 2 + [.004] * 4 + [.012] * 2)
# Silhouette limb widths in body heights: (joint a, joint b, width).
_LIMBS = [(5, 7, .055), (6, 8, .055), (7, 9, .045), (8, 10, .045),
          (11, 13, .085), (12, 14, .085), (13, 15, .060), (14, 16, .060), (5, 6, .070)]


@dataclass(frozen=True)
class SynthSummary:
    """What `synthesize` wrote. `counts[side][class]` with side in (train, test)."""

    out_dir: Path
    pose_root: Path
    silhouette_root: Path
    partition_path: Path
    meta_path: Path
    counts: dict[str, dict[str, int]]
    total_frames: int
    oracle_macro_f1: float
    num_sequences: int
    frames: int
    train_ratio: tuple[int, int, int]
    seed: int

    def table(self) -> pd.DataFrame:
        """Class counts: rows negative/neutral/positive/total, columns train/test/total."""
        frame = pd.DataFrame(self.counts).reindex(list(CLASS_NAMES))
        frame["total"] = frame.sum(axis=1)
        frame.loc["total"] = frame.sum(axis=0)
        return frame.astype(int)

    def format(self) -> str:
        ratio = ":".join(map(str, self.train_ratio))
        return "\n".join([
            f"synthetic Scoliosis1K stand-in: {self.num_sequences} sequences x {self.frames} frames "
            f"({self.total_frames} frames), train ratio pos:neu:neg {ratio}, seed {self.seed}",
            self.table().to_string(),
            f"oracle macro-F1 (test ids, noiseless severity): {self.oracle_macro_f1:.3f}",
            f"pose root:       {self.pose_root}",
            f"silhouette root: {self.silhouette_root}",
            f"partition:       {self.partition_path}",
            f"latent severities: {self.meta_path}",
        ])


def parse_ratio(text: str) -> tuple[int, int, int]:
    """'1:1:8' -> (1, 1, 8), the training ratio positive:neutral:negative."""
    parts = text.split(":")
    try:
        ratio = tuple(int(p) for p in parts)
    except ValueError:
        ratio = ()
    if len(ratio) != 3 or min(ratio) < 1:
        raise ConfigError(f"train ratio must be three positive integers pos:neu:neg like 1:1:8, got {text!r}")
    return ratio  # type: ignore[return-value]


def partition_filename(train_ratio: tuple[int, int, int]) -> str:
    """The release's name for a split: (1, 1, 8) -> Scoliosis1K_118.json, (1, 1, 16) -> Scoliosis1K_1116.json."""
    return f"Scoliosis1K_{''.join(str(r) for r in train_ratio)}.json"


def oracle_macro_f1(root: str | Path, ids: list[str] | tuple[str, ...]) -> float | None:
    """Macro-F1 of classifying `ids` by their noiseless latent severity: the stand-in's ceiling in expectation,
    computed *on those ids* (a val set and a test set have different ones). On a small set it is a reference,
    not a bound: with 3 neutral test ids a model can beat it by luck (the demo of 2026-12-01: 0.884 vs 0.709).
    None when `root` is not a stand-in or holds none of the ids."""
    meta_path = Path(root) / "synth_meta.json"
    if not meta_path.is_file() or not ids:
        return None
    meta = json.loads(meta_path.read_text())
    sequences = meta.get("sequences", {})
    known = [i for i in ids if i in sequences]
    if len(known) != len(ids):
        return None
    labels = [CLASS_NAMES.index(sequences[i]["class"]) for i in known]
    thresholds = meta.get("severity_thresholds", SEVERITY_THRESHOLDS)
    predicted = np.digitize([sequences[i]["severity"] for i in known], thresholds)
    return float(f1_score(labels, predicted, labels=[0, 1, 2], average="macro", zero_division=0))


def write_partition(root: str | Path, train_ratio: tuple[int, int, int], seed: int = 0) -> Path:
    """Another official-style partition of an existing stand-in: `Scoliosis1K_<ratio>.json` in `root`, with
    as many TRAIN_SET ids as the synthesis's own partition, drawn per class at `train_ratio` (at least
    MIN_TRAIN_PER_CLASS each, leaving MIN_TEST_PER_CLASS per class to TEST_SET), and every other id in TEST_SET —
    the shape of the release's four files, which share the data and differ in the carve. The synthesis's own
    ratio returns its file unchanged. Same stand-in, ratio and seed -> the same file; written atomically.
    """
    root = Path(root)
    meta_path = root / "synth_meta.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: missing; write_partition needs a stand-in made by synthesize")
    meta = json.loads(meta_path.read_text())
    train_ratio = tuple(int(r) for r in train_ratio)  # type: ignore[assignment]
    if len(train_ratio) != 3 or min(train_ratio) < 1:
        raise ConfigError(f"train_ratio must be three positive integers (pos, neu, neg), got {train_ratio}")
    path = root / partition_filename(train_ratio)
    if list(train_ratio) == list(meta["train_ratio"]):
        return path
    by_class = {c: sorted(i for i, s in meta["sequences"].items() if s["class"] == c) for c in CLASS_NAMES}
    n_train = sum(1 for s in meta["sequences"].values() if s["side"] == "train")
    positive, neutral, negative = train_ratio
    wanted = _raise_to_minimum(_allocate(n_train, np.array([negative, neutral, positive])), MIN_TRAIN_PER_CLASS)
    rng = np.random.default_rng([seed, *train_ratio])
    train: list[str] = []
    for c, want in zip(CLASS_NAMES, wanted):
        available = len(by_class[c]) - MIN_TEST_PER_CLASS
        if available < MIN_TRAIN_PER_CLASS:
            raise DataError(f"{root}: only {len(by_class[c])} {c} sequences; a partition needs "
                            f"{MIN_TRAIN_PER_CLASS} train and {MIN_TEST_PER_CLASS} test ids per class")
        # Fewer than the ratio asks for when the class is too small: the file says what it holds.
        train += [by_class[c][j] for j in rng.permutation(len(by_class[c]))[: min(int(want), available)]]
    chosen = set(train)
    split = {"TRAIN_SET": sorted(chosen), "TEST_SET": sorted(set(meta["sequences"]) - chosen)}
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(split, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Integer counts summing to `total`, proportional to `weights` (largest remainder)."""
    exact = total * np.asarray(weights, dtype=float) / np.sum(weights)
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def _raise_to_minimum(counts: np.ndarray, minimum: int) -> np.ndarray:
    counts = counts.copy()
    for c in range(len(counts)):
        while counts[c] < minimum:
            counts[int(np.argmax(counts))] -= 1
            counts[c] += 1
    return counts


def plan_counts(num_sequences: int, train_ratio: tuple[int, int, int] = (1, 1, 8)) -> dict[str, dict[str, int]]:
    """Ids per side and class: the release's shape (negative-heavy train at `train_ratio`, positive-heavy
    test = release totals minus train) scaled to `num_sequences`, with a floor per class and side."""
    if num_sequences < MIN_SEQUENCES:
        raise ConfigError(f"num_sequences must be >= {MIN_SEQUENCES} (>= {MIN_TRAIN_PER_CLASS} train and "
                          f"{MIN_TEST_PER_CLASS} test ids per class), got {num_sequences}")
    if len(train_ratio) != 3 or min(train_ratio) < 1:
        raise ConfigError(f"train_ratio must be three positive integers (pos, neu, neg), got {train_ratio}")
    positive, neutral, negative = train_ratio
    n_train = min(max(3 * MIN_TRAIN_PER_CLASS, round(num_sequences * RELEASE_TRAIN_FRACTION)),
                  num_sequences - 3 * MIN_TEST_PER_CLASS)
    train = _raise_to_minimum(_allocate(n_train, np.array([negative, neutral, positive])), MIN_TRAIN_PER_CLASS)
    totals = _allocate(num_sequences, np.array([RELEASE_TOTALS[c] for c in CLASS_NAMES]))
    test_shape = np.maximum(totals - train, MIN_TEST_PER_CLASS)
    test = _raise_to_minimum(_allocate(num_sequences - n_train, test_shape), MIN_TEST_PER_CLASS)
    return {side: {c: int(n) for c, n in zip(CLASS_NAMES, counts)} for side, counts in
            (("train", train), ("test", test))}


def _severities(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Latent severity per sequence, drawn from the population conditional on its (noisy-threshold) label."""
    needed = np.bincount(labels, minlength=3)
    pools: list[list[float]] = [[], [], []]
    while any(len(pools[c]) < needed[c] for c in range(3)):
        s = rng.beta(*SEVERITY_BETA, size=4096)
        noisy = np.digitize(s + rng.normal(0.0, LABEL_NOISE, size=s.shape), SEVERITY_THRESHOLDS)
        for c in range(3):
            pools[c].extend(s[noisy == c][: needed[c] - len(pools[c])].tolist())
    taken = [0, 0, 0]
    out = np.empty(len(labels))
    for i, label in enumerate(labels):
        out[i] = pools[label][taken[label]]
        taken[label] += 1
    return out


def _rotate(points: np.ndarray, centre: np.ndarray, angle: float) -> np.ndarray:
    """Rotate (..., 2) points about `centre` by `angle` radians (in the plane of the two coordinates)."""
    c, s = np.cos(angle), np.sin(angle)
    d = points - centre
    return np.stack([c * d[..., 0] - s * d[..., 1], s * d[..., 0] + c * d[..., 1]], axis=-1) + centre


def _walk(severity: float, frames: int, rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One subject walking toward/away from the camera.

    Returns image joints (T, 17, 2) without estimator noise, facing (T,) bool (True = toward the camera),
    body height in pixels (T,), and the wrist-occlusion mask (T, 17) bool.
    """
    height = rng.uniform(1.40, 1.80)  # adolescents, metres
    body = _TEMPLATE.copy()
    body[5:11, 0] *= rng.normal(1.0, 0.06)  # shoulder breadth
    body[11:, 0] *= rng.normal(1.0, 0.06)  # hip breadth
    leg = rng.normal(1.0, 0.03)
    body[11:, 1] *= leg
    # Postural asymmetry from severity on a random side: shoulder drop, pelvic tilt (compensating),
    # lateral trunk shift carrying the arms and, partly, the head.
    side = rng.choice([-1.0, 1.0])
    body[LEFT_ARM, 1] += side * severity * SHOULDER_DROP / 2
    body[RIGHT_ARM, 1] -= side * severity * SHOULDER_DROP / 2
    body[11, 1] -= side * severity * PELVIC_TILT / 2
    body[12, 1] += side * severity * PELVIC_TILT / 2
    shift = side * severity * TRUNK_SHIFT
    body[5:11, 0] += shift
    body[FACE, 0] += 0.7 * shift
    # Nuisance: head tilt about the neck (class-independent, confuses full-body representations).
    neck = np.array([0.7 * shift, 0.87])
    body[FACE, :2] = _rotate(body[FACE, :2], neck, np.deg2rad(rng.normal(0.0, 7.0)))

    t = np.arange(frames)
    period = rng.uniform(0.95, 1.20)  # stride period, seconds
    speed = rng.uniform(1.0, 1.3)  # m/s
    phi = rng.uniform(0, 2 * np.pi) + 2 * np.pi * t / (FPS * period)
    sin, cos = np.sin(phi), np.cos(phi)
    joints = np.broadcast_to(body, (frames, 17, 3)).copy()
    # Legs: feet swing fore-aft, the swinging foot lifts, the knee flexes forward.
    step = 0.25 * speed * period / height
    for ankle, knee, sign in ((15, 13, 1.0), (16, 14, -1.0)):
        swing = np.maximum(0.0, sign * cos)
        joints[:, ankle, 2] += sign * step * sin
        joints[:, ankle, 1] += 0.07 * swing ** 2
        joints[:, ankle, 0] += sign * 0.008 * cos
        joints[:, knee, 2] += 0.5 * sign * step * sin + 0.06 * swing
        joints[:, knee, 1] += 0.025 * swing ** 2
    # Arms swing opposite to the legs, with a per-arm amplitude (nuisance asymmetry); wrists rise on the arc.
    for (shoulder, elbow, wrist), sign in ((LEFT_ARM, -1.0), (RIGHT_ARM, 1.0)):
        amplitude = 0.12 * np.exp(rng.normal(0.0, 0.25))
        joints[:, wrist, 2] += sign * amplitude * sin
        joints[:, elbow, 2] += 0.5 * sign * amplitude * sin
        joints[:, wrist, 1] += (amplitude * sin) ** 2 / 0.7
        joints[:, shoulder, 2] -= sign * 0.015 * sin
    joints[:, :, 0] += 0.015 * cos[:, None]  # pelvis sways over the stance leg
    joints[:, :, 1] += 0.010 * np.cos(2 * phi)[:, None]  # vertical bob, twice per stride
    joints *= height

    # Path: back and forth between NEAR and FAR; start so a short sequence does not turn around.
    span = FAR_M - NEAR_M
    travel = speed * t / FPS
    start = rng.uniform(0.0, max(0.0, span - travel[-1]))
    position = (start + travel + (span if rng.random() < 0.5 else 0.0)) % (2 * span)
    toward = position < span
    distance = np.where(toward, FAR_M - position, NEAR_M + position - span)
    facing = np.where(toward, 1.0, -1.0)[:, None]
    lateral = rng.uniform(-0.4, 0.4) + 0.05 * np.sin(2 * np.pi * t / (FPS * rng.uniform(3, 6)))

    # Facing the camera, the person's left is on the image right; walking away, on the image left.
    cam_x = lateral[:, None] + facing * joints[..., 0]
    cam_y = CAMERA_HEIGHT_M - joints[..., 1]
    depth = distance[:, None] - facing * joints[..., 2]
    image = np.stack([PRINCIPAL[0] + FOCAL_PX * cam_x / depth, PRINCIPAL[1] + FOCAL_PX * cam_y / depth], -1)
    image = _rotate(image, np.array(PRINCIPAL), np.deg2rad(rng.normal(0.0, 1.5)))  # camera roll
    image += rng.normal(0.0, 1.0, size=(frames, 1, 2))  # frame-to-frame position jitter
    # A wrist swung behind the torso (as seen from the camera) is partly occluded.
    occluded = np.zeros((frames, 17), dtype=bool)
    occluded[:, [9, 10]] = facing * joints[:, [9, 10], 2] < -0.04 * height
    return image, toward, FOCAL_PX * height / distance, occluded


def _estimate(image: np.ndarray, toward: np.ndarray, body_px: np.ndarray, occluded: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """What a pose estimator emits: noisy (x, y, confidence), missing joints as exact (0, 0, 0)."""
    frames = len(image)
    xy = image + rng.normal(0.0, 1.0, size=image.shape) * (_NOISE[None, :] * body_px[:, None])[..., None]
    xy[..., 0] = np.clip(xy[..., 0], 1.0, IMAGE_WIDTH - 1.0)
    xy[..., 1] = np.clip(xy[..., 1], 1.0, IMAGE_HEIGHT - 1.0)
    conf = np.where(toward[:, None], _CONF_FRONT, _CONF_BACK) + rng.normal(0.0, 0.04, size=(frames, 17))
    conf = np.clip(conf - 0.25 * occluded, 0.05, 0.99)
    pose = np.concatenate([xy, conf[..., None]], axis=-1).astype(np.float32)
    pose[rng.random((frames, 17)) < _DROP_P] = 0.0
    return pose


def _silhouette(joints: np.ndarray, body_px: float) -> np.ndarray:
    """Render one body (17, 2 image px) as a mask, then crop and centre it like the release (64 x 64, 0/255)."""
    scale = 128.0 / body_px  # draw at ~128 px body height; resizing to 64 smooths the edges
    pts = (joints - joints.min(axis=0) + 0.15 * body_px) * scale
    w, h = (np.ceil(pts.max(axis=0) + 0.15 * 128)).astype(int)
    canvas = np.zeros((h, w), np.uint8)
    p = np.round(pts).astype(np.int32)
    for a, b, width in _LIMBS:
        cv2.line(canvas, tuple(p[a]), tuple(p[b]), 255, max(1, round(width * 128)))
    hip_centre = (pts[11] + pts[12]) / 2
    torso = np.stack([pts[5], pts[6], hip_centre + 1.25 * (pts[12] - hip_centre),
                      hip_centre + 1.25 * (pts[11] - hip_centre)])
    cv2.fillConvexPoly(canvas, np.round(torso).astype(np.int32), 255)
    head = (pts[3] + pts[4]) / 2 - [0, 0.01 * 128]
    neck = (pts[5] + pts[6]) / 2
    cv2.line(canvas, tuple(np.round(neck).astype(int)), tuple(np.round(head).astype(int)), 255, round(0.06 * 128))
    cv2.ellipse(canvas, tuple(np.round(head).astype(int)), (round(0.055 * 128), round(0.068 * 128)), 0, 0, 360, 255, -1)
    for ankle in (15, 16):
        cv2.ellipse(canvas, tuple(p[ankle] + [0, round(0.02 * 128)]), (round(0.03 * 128), round(0.025 * 128)),
                    0, 0, 360, 255, -1)
    return crop_and_centre(canvas)


def crop_and_centre(mask: np.ndarray, size: int = SIL_SIZE) -> np.ndarray:
    """Release-style silhouette normalisation: crop to the person's rows, resize to height `size` keeping the
    aspect ratio, then centre the column where the mass reaches half on a `size`-wide canvas."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    crop = mask[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    width = max(1, round(crop.shape[1] * size / crop.shape[0]))
    resized = cv2.resize(crop, (width, size), interpolation=cv2.INTER_AREA)
    binary = np.where(resized > 127, 255, 0).astype(np.uint8)
    mass = np.cumsum(binary.sum(axis=0, dtype=np.int64))
    centre = int(np.searchsorted(mass, mass[-1] / 2))
    padded = np.pad(binary, ((0, 0), (size // 2, size - size // 2)))
    return np.ascontiguousarray(padded[:, centre: centre + size])


def _dump(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump(array, handle, protocol=4)


def read_synth_meta(out: str | Path) -> dict | None:
    """The `synth_meta.json` an earlier synthesis left in `out` (the marker that its roots are scoliotune's), or
    None when there is none or it is not one (no generator version)."""
    meta = Path(out) / "synth_meta.json"
    if not meta.is_file():
        return None
    try:
        values = load_json_bounded(meta, 64 << 20)
    except (DataError, ConfigError):
        return None
    return values if isinstance(values, dict) and "generator_version" in values else None


def synthesize(out_dir: str | Path, num_sequences: int = 300, frames: int = 40,
               train_ratio: tuple[int, int, int] = (1, 1, 8), seed: int = 0, progress: bool = True,
               overwrite: bool = False) -> SynthSummary:
    """Write the stand-in under `out_dir`: pose and silhouette roots, `Scoliosis1K_<ratio>.json` and
    `synth_meta.json` (parameters and each id's latent severity). Same arguments -> byte-identical files.

    Existing pose/silhouette roots are refused unless `overwrite`, which deletes those two roots and the
    partition file an earlier synthesis recorded in `synth_meta.json` (its marker: without a readable one,
    the roots are not ours and `overwrite` refuses too); nothing else in `out_dir` is touched.
    """
    if frames < 1:
        raise ConfigError(f"frames must be >= 1, got {frames}")
    train_ratio = tuple(int(r) for r in train_ratio)  # type: ignore[assignment]
    counts = plan_counts(num_sequences, train_ratio)
    out = Path(out_dir)
    defaults = DataConfig()
    pose_root, sil_root = out / defaults.pose_dir, out / defaults.silhouette_dir
    earlier = read_synth_meta(out) if overwrite else None
    for root in (pose_root, sil_root):
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            if not overwrite:
                raise DataError(f"{root} already exists and is not empty; refusing to mix two data sets "
                                "(choose another directory or overwrite)")
            if earlier is None:
                raise DataError(f"{root} already exists and no synth_meta.json in {out} says scoliotune "
                                "synthesised it; overwrite replaces only an earlier synthesis (nothing was deleted)")
    if earlier is not None:
        for root in (pose_root, sil_root):
            if os.path.lexists(root):
                shutil.rmtree(root) if root.is_dir() and not root.is_symlink() else root.unlink()
        # A partition from an earlier synthesis would list ids of a data set that no longer exists.
        stale_ratio = earlier.get("train_ratio")
        if isinstance(stale_ratio, list) and len(stale_ratio) == 3:
            (out / partition_filename(tuple(stale_ratio))).unlink(missing_ok=True)  # type: ignore[arg-type]

    rng = np.random.default_rng(seed)
    slots = [(side, CLASS_NAMES.index(c)) for side in ("train", "test") for c in CLASS_NAMES
             for _ in range(counts[side][c])]
    slots = [slots[i] for i in rng.permutation(len(slots))]  # ids are not ordered by class or side
    labels = np.array([label for _, label in slots])
    severity = _severities(labels, rng)
    ids = [f"{i:05d}" for i in range(num_sequences)]

    total_frames = 0
    for i in tqdm(range(num_sequences), desc="synth", unit="seq", disable=not progress):
        seq_rng = np.random.default_rng([seed, i])  # per-sequence stream: independent of iteration order
        image, toward, body_px, occluded = _walk(float(severity[i]), frames, seq_rng)
        pose = _estimate(image, toward, body_px, occluded, seq_rng)
        sil = np.stack([_silhouette(image[f], float(body_px[f])) for f in range(frames)])
        relative = Path(ids[i]) / CLASS_NAMES[labels[i]] / VIEW / f"{VIEW}.pkl"
        _dump(pose_root / relative, pose)
        _dump(sil_root / relative, sil)
        total_frames += frames

    test = np.array([side == "test" for side, _ in slots])
    oracle = np.digitize(severity, SEVERITY_THRESHOLDS)
    oracle_f1 = float(f1_score(labels[test], oracle[test], labels=[0, 1, 2], average="macro", zero_division=0))
    partition_path = out / partition_filename(train_ratio)
    split = {"TRAIN_SET": [i for i, (side, _) in zip(ids, slots) if side == "train"],
             "TEST_SET": [i for i, (side, _) in zip(ids, slots) if side == "test"]}
    partition_path.write_text(json.dumps(split, indent=1) + "\n")
    meta_path = out / "synth_meta.json"
    meta = {"generator_version": GENERATOR_VERSION, "num_sequences": num_sequences, "frames": frames,
            "train_ratio": list(train_ratio), "seed": seed, "severity_thresholds": list(SEVERITY_THRESHOLDS),
            "label_noise": LABEL_NOISE, "counts": counts, "oracle_macro_f1": round(oracle_f1, 6),
            "sequences": {i: {"class": CLASS_NAMES[lab], "side": side, "severity": round(float(s), 6)}
                          for i, (side, lab), s in zip(ids, slots, severity)}}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return SynthSummary(out_dir=out, pose_root=pose_root, silhouette_root=sil_root,
                        partition_path=partition_path, meta_path=meta_path, counts=counts,
                        total_frames=total_frames, oracle_macro_f1=oracle_f1, num_sequences=num_sequences,
                        frames=frames, train_ratio=train_ratio, seed=seed)
