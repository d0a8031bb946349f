"""Frames per second of the on-the-fly skeleton-map renderer vs a per-frame NumPy/OpenCV reference.

Run: python benchmarks/render.py                # 240 frames, full-body, opengait alignment, sigma 8
     python benchmarks/render.py --frames 1920 --device cuda --threads 16

Both implementations render the same synthetic walking poses (already imputed) into uint8 export maps
(T, 2, 64, 64) in the same process. The reference is the straightforward way to write the OpenGait
pretreatment: a Python loop over frames, one over joints and limbs with NumPy on each ±3 sigma box,
matplotlib-style grey levels and cv2.resize(INTER_AREA) per channel. The script prints both rates, their
ratio, the largest level difference between the two outputs, and one summary line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

# Runnable from a checkout without `pip install -e .`: put the repository root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scolio_core.config import InputConfig
from scolio_core.render import COCO_LIMBS, PARTS, render_skeleton_maps

GREY = ((np.arange(256) * (1.0 / 255.0)) * 255.0).astype(np.uint8)  # matplotlib cm.gray as uint8
STANDING = np.array([[250, 100], [254, 96], [246, 96], [259, 99], [241, 99], [266, 122], [234, 122],
                     [272, 150], [228, 150], [275, 176], [225, 176], [260, 182], [240, 182],
                     [262, 212], [238, 212], [263, 238], [237, 240]], dtype=np.float64)


def synthetic_poses(frames: int, seed: int = 0) -> np.ndarray:
    """A person walking across the image: swinging limbs, detector jitter, random confidences."""
    rng = np.random.default_rng(seed)
    phase = np.linspace(0, 8 * np.pi, frames)[:, None]
    xy = np.repeat(STANDING[None], frames, axis=0)
    xy[:, 7:17:2, 0] += 12 * np.sin(phase)
    xy[:, 8:17:2, 0] -= 12 * np.sin(phase)
    xy[..., 0] += np.linspace(-150, 150, frames)[:, None]
    xy += rng.normal(0, 1.5, xy.shape)
    conf = rng.uniform(0.3, 1.0, (frames, 17, 1))
    return np.concatenate([xy, conf], axis=-1).astype(np.float32)


def _gaussian(arr: np.ndarray, x: float, y: float, value: float, sigma: float) -> None:
    h, w = arr.shape
    x0, x1 = max(int(x - 3 * sigma), 0), min(int(x + 3 * sigma) + 1, w)
    y0, y1 = max(int(y - 3 * sigma), 0), min(int(y + 3 * sigma) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    px = np.arange(x0, x1, dtype=np.float32)
    py = np.arange(y0, y1, dtype=np.float32)[:, None]
    patch = np.exp(-((px - x) ** 2 + (py - y) ** 2) / (2 * sigma**2)) * value
    np.maximum(arr[y0:y1, x0:x1], patch, out=arr[y0:y1, x0:x1])


def _limb(arr: np.ndarray, a: np.ndarray, b: np.ndarray, value: float, start_value: float, sigma: float) -> None:
    length2 = float(((b - a) ** 2).sum())
    if length2 < 1:
        _gaussian(arr, a[0], a[1], start_value, sigma)
        return
    h, w = arr.shape
    x0, x1 = max(int(min(a[0], b[0]) - 3 * sigma), 0), min(int(max(a[0], b[0]) + 3 * sigma) + 1, w)
    y0, y1 = max(int(min(a[1], b[1]) - 3 * sigma), 0), min(int(max(a[1], b[1]) + 3 * sigma) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    px = np.arange(x0, x1, dtype=np.float32)[None, :] - a[0]
    py = np.arange(y0, y1, dtype=np.float32)[:, None] - a[1]
    t = np.clip((px * (b[0] - a[0]) + py * (b[1] - a[1])) / length2, 0, 1)
    d2 = (px - t * (b[0] - a[0])) ** 2 + (py - t * (b[1] - a[1])) ** 2
    np.maximum(arr[y0:y1, x0:x1], np.exp(-d2 / (2 * sigma**2)) * value, out=arr[y0:y1, x0:x1])


def reference_render(poses: np.ndarray, cfg: InputConfig) -> np.ndarray:
    """Per-frame NumPy/OpenCV `opengait` pipeline (full-body only). (T, 17, 3) -> (T, 2, 64, 64) uint8."""
    size, sigma = cfg.canvas_size, cfg.sigma
    out = np.zeros((len(poses), 2, cfg.map_size, cfg.map_size), np.uint8)
    for f, frame in enumerate(poses):
        xy = frame[:, :2].astype(np.float64)
        xy -= (xy[11] + xy[12]) / 2
        xy = xy * ((size // 1.5) / (xy[:, 1].max() - xy[:, 1].min())) + size // 2
        conf = frame[:, 2].astype(np.float64)
        limbs = np.zeros((size, size), np.float32)
        joints = np.zeros((size, size), np.float32)
        for i, j in COCO_LIMBS:
            if min(conf[i], conf[j]) >= cfg.min_confidence:
                _limb(limbs, xy[i], xy[j], min(conf[i], conf[j]), conf[i], sigma)
        for j in range(17):
            if conf[j] >= cfg.min_confidence:
                _gaussian(joints, xy[j, 0], xy[j, 1], conf[j], sigma)
        for c, channel in enumerate((limbs, np.minimum(joints * cfg.joint_weight, 1.0))):
            levels = GREY[np.minimum((channel * 256).astype(np.int64), 255)].astype(np.float64)
            rows = np.flatnonzero(levels.sum(axis=1))
            top, bottom = (rows[0], rows[-1]) if len(rows) else (0, 0)
            h = bottom - top + 1
            crop = levels[top:bottom + 1, size // 2 - h // 2:size // 2 + h // 2 + 1] / 255.0
            resized = cv2.resize(crop, (cfg.map_size, cfg.map_size), interpolation=cv2.INTER_AREA)
            out[f, c] = (resized * 255).astype(np.uint8)
    return out


def _rate(fn, frames: int, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up (allocator, CUDA context, kernels)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return frames / best, result


def run_benchmark(frames: int, device: str, threads: int, repeats: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    cv2.setNumThreads(1)  # the reference is the single-process per-frame loop it is meant to be
    cfg = InputConfig(representation="full-body", alignment="opengait", sigma=8.0)
    assert PARTS[cfg.representation][1] == COCO_LIMBS
    poses = synthetic_poses(frames)
    tensor = torch.from_numpy(poses).to(device)

    def vectorised() -> np.ndarray:
        maps = render_skeleton_maps(tensor, cfg, output="export")
        if maps.is_cuda:
            torch.cuda.synchronize()
        return maps.cpu().numpy()

    fast_fps, fast = _rate(vectorised, frames, repeats)
    ref_fps, ref = _rate(lambda: reference_render(poses, cfg), frames, max(1, repeats // 2))
    diff = int(np.abs(fast.astype(int) - ref.astype(int)).max())
    return {"vectorised_fps": fast_fps, "reference_fps": ref_fps, "ratio": fast_fps / ref_fps,
            "max_level_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240, help="frames rendered per timing (%(default)s)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (%(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is kept (%(default)s)")
    args = parser.parse_args()
    r = run_benchmark(args.frames, args.device, args.threads, args.repeats)
    print(f"vectorised renderer ({args.device}, {args.threads} thread(s)): {r['vectorised_fps']:9.1f} frames/s")
    print(f"per-frame NumPy/OpenCV reference (1 core): {r['reference_fps']:9.1f} frames/s")
    print(f"ratio: {r['ratio']:.2f}x   largest level difference: {r['max_level_diff']}")
    print(f"SUMMARY render: {args.frames} frames full-body/opengait sigma 8 -> vectorised "
          f"{r['vectorised_fps']:.0f} fps on {args.device} vs reference {r['reference_fps']:.0f} fps "
          f"({r['ratio']:.2f}x), outputs within {r['max_level_diff']} level(s)")


if __name__ == "__main__":
    main()
