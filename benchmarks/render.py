"""Frames per second of the on-the-fly skeleton-map renderer vs a per-frame NumPy/OpenCV reference, and
what the offline workflow (re-export the whole data set for every sigma) would cost instead.

Run: python benchmarks/render.py                # ~30 s: 240 frames, 1 torch thread, CPU
     python benchmarks/render.py --frames 1920 --device cuda --threads 16

Both implementations render the same synthetic walking poses (already imputed) into uint8 export maps
(T, 2, 64, 64) in the same process, full-body / opengait alignment / canvas 128 / sigma 8 (OpenGait's
defaults). The reference is the straightforward way to write the OpenGait pretreatment: a Python loop
over frames, one over joints and limbs with NumPy on each ±3 sigma box, matplotlib-style grey levels and
cv2.resize(INTER_AREA) per channel. Also timed: the renderer at the CPU demo profile's input settings
(sweeps/demo.yaml: body-only, aligned, canvas 64, 32 x 22 maps) at sigma 4 (its published point)
and 6 (the top of its range). The re-export cost is
extrapolated from the measured rates and a measured pickle write of a few sequences to the release size
(1,493 sequences x 300 frames = 447,900 frames); on the fly it is zero, paid per batch instead (see
benchmarks/train_step.py). Timings are the best of --repeats runs (the machine may be shared).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

# Runnable from a checkout without `pip install -e .`: put the repository root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scolio_core.config import InputConfig
from scolio_core.render import COCO_LIMBS, PARTS, render_skeleton_maps
from sweeps.profiles import load_profile

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


RELEASE_FRAMES = 1493 * 300  # Scoliosis1K: 1,493 sequences of ~300 frames


def _write_seconds_per_frame(maps: np.ndarray, sequences: int = 4) -> float:
    """Measured cost of writing export maps as one pickle per sequence (the release layout)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for i in range(sequences):
            folder = os.path.join(tmp, f"{i:05d}", "negative", "000_180")
            os.makedirs(folder)
            with open(os.path.join(folder, "000_180.pkl"), "wb") as handle:
                pickle.dump(maps, handle, protocol=pickle.HIGHEST_PROTOCOL)
                handle.flush()
                os.fsync(handle.fileno())
        return (time.perf_counter() - start) / (sequences * len(maps))


def run_benchmark(frames: int, device: str, threads: int, repeats: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    cv2.setNumThreads(1)  # the reference is the single-process per-frame loop it is meant to be
    cfg = InputConfig(representation="full-body", alignment="opengait", sigma=8.0)
    assert PARTS[cfg.representation][1] == COCO_LIMBS
    poses = synthetic_poses(frames)
    tensor = torch.from_numpy(poses).to(device)

    def vectorised(config: InputConfig, output: str = "export"):
        def call() -> np.ndarray:
            maps = render_skeleton_maps(tensor, config, output=output)
            if maps.is_cuda:
                torch.cuda.synchronize()
            return maps.cpu().numpy()
        return call

    fast_fps, fast = _rate(vectorised(cfg), frames, repeats)
    ref_fps, ref = _rate(lambda: reference_render(poses, cfg), frames, max(1, repeats // 2))
    diff = int(np.abs(fast.astype(int) - ref.astype(int)).max())
    result = {"vectorised_fps": fast_fps, "reference_fps": ref_fps, "ratio": fast_fps / ref_fps,
              "max_level_diff": diff}
    demo = load_profile("demo").base_config().input
    for sigma in (4.0, 6.0):
        demo_cfg = dataclasses.replace(demo, representation="body-only", sigma=sigma)
        result[f"demo_sigma{sigma:g}_fps"] = _rate(vectorised(demo_cfg, "model"), frames, repeats)[0]
    write = _write_seconds_per_frame(ref[: min(len(ref), 300)])
    result["write_us_per_frame"] = write * 1e6
    result["export_ref_hours"] = RELEASE_FRAMES * (1.0 / ref_fps + write) / 3600
    result["export_fast_minutes"] = RELEASE_FRAMES * (1.0 / fast_fps + write) / 60
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240, help="frames rendered per timing (%(default)s)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (%(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the best is kept (%(default)s)")
    args = parser.parse_args()
    r = run_benchmark(args.frames, args.device, args.threads, args.repeats)
    where = f"{args.device}, {args.threads} thread(s)"
    print(f"on-the-fly renderer ({where}), opengait defaults: {r['vectorised_fps']:9.1f} frames/s")
    print(f"per-frame NumPy/OpenCV reference (1 core):        {r['reference_fps']:9.1f} frames/s")
    print(f"ratio: {r['ratio']:.2f}x (goal >= 50x)   largest level difference: {r['max_level_diff']}")
    for sigma in (4, 6):
        print(f"on-the-fly renderer ({where}), demo profile inputs (body-only, aligned, 64 -> 32x22) sigma {sigma}: "
              f"{r[f'demo_sigma{sigma}_fps']:9.1f} frames/s")
    print(f"writing export pickles: {r['write_us_per_frame']:.1f} us/frame (measured on 4 x {min(args.frames, 300)} frames)")
    print(f"offline re-export of the release ({RELEASE_FRAMES:,} frames, extrapolated) per sigma value: "
          f"{r['export_ref_hours']:.2f} h with the per-frame pipeline, {r['export_fast_minutes']:.1f} min with "
          f"`scolio render`; on the fly: 0 (paid per batch, see benchmarks/train_step.py)")
    print(f"SUMMARY render: on-the-fly {r['vectorised_fps']:.0f} fps vs per-frame {r['reference_fps']:.0f} fps "
          f"({r['ratio']:.1f}x, goal 50x) on {args.device}; demo inputs {r['demo_sigma4_fps']:.0f} fps at sigma 4; "
          f"a per-sigma re-export would cost {r['export_ref_hours']:.1f} h (extrapolated), on the fly 0")


if __name__ == "__main__":
    main()
