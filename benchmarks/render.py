"""Frames per second of the on-the-fly skeleton-map renderer (fused numba kernel on CPU, and the torch code
it replaced) vs a per-frame NumPy/OpenCV reference, and what the offline workflow (re-export the whole data
set for every sigma) would cost instead.

Run: python benchmarks/render.py                # ~1-2 min: 240 frames, 1 thread, CPU, incl. a cold compile
     python benchmarks/render.py --threads 2 --skip-compile
     python benchmarks/render.py --frames 1920 --device cuda --threads 16

All implementations render the same synthetic walking poses (already imputed) into uint8 export maps
(T, 2, 64, 64) in the same process at the same thread count, full-body / opengait alignment / canvas 128 /
sigma 8 (OpenGait's defaults); their timings are interleaved, best of --repeats each, so a busy machine
slows all of them alike. The reference is the straightforward way to write the OpenGait pretreatment: a
Python loop over frames, one over joints and limbs with NumPy on each +-3 sigma box, matplotlib-style grey
levels and cv2.resize(INTER_AREA) per channel. The two renderer paths are picked with
SCOLIO_RENDER_BACKEND (numba = the CPU default, torch = the code CUDA runs). Also timed: the numba
kernel's compile, cold (fresh NUMBA_CACHE_DIR, in a subprocess) and loaded from the on-disk cache (a
second subprocess: what each trial process pays), and the renderer at the CPU demo profile's input
settings (sweeps/demo.yaml: body-only, aligned, canvas 64, 32 x 22 maps) at sigma 4 (its published point)
and 6 (the top of its range). The re-export cost is extrapolated from the measured rates and a measured
pickle write of a few sequences to the release size (1,493 sequences x 300 frames = 447,900 frames); on
the fly it is zero, paid per batch instead (see benchmarks/train_step.py).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pickle
import subprocess
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
from scolio_core.render.constants import COCO_LIMBS, PARTS
from scolio_core.render.skeleton import BACKEND_ENV, render_skeleton_maps
from scolio_sweep.settings.profile import load_profile

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


@contextlib.contextmanager
def _backend(name: str):
    """Render with one implementation (SCOLIO_RENDER_BACKEND) inside the block."""
    before = os.environ.get(BACKEND_ENV)
    os.environ[BACKEND_ENV] = name
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(BACKEND_ENV, None)
        else:
            os.environ[BACKEND_ENV] = before


def _rates(fns: dict, frames: int, repeats: int) -> tuple[dict[str, float], dict[str, object]]:
    """Frames/s of each callable, best of `repeats` interleaved runs (after one warm-up run each)."""
    results = {name: fn() for name, fn in fns.items()}  # warm-up (allocator, kernels, caches)
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: frames / seconds for name, seconds in best.items()}, results


_COMPILE_PROBE = """
import json, sys, time
start = time.perf_counter()
import torch
from scolio_core.render import numba_cpu
imported = time.perf_counter()
torch.set_num_threads(int(sys.argv[1]))
seconds = numba_cpu.warm_up(parallel=int(sys.argv[1]) > 1)
print(json.dumps({"compile_s": seconds, "import_s": imported - start}))
"""


def compile_seconds(threads: int) -> dict[str, float]:
    """Numba kernel compile time in fresh processes: cold (empty cache directory), then from the cache."""
    root = Path(__file__).resolve().parents[1]
    times = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(root))
        for label in ("cold", "cached"):
            done = subprocess.run([sys.executable, "-c", _COMPILE_PROBE, str(threads)], env=env, cwd=root,
                                  capture_output=True, text=True, check=True)
            probe = json.loads(done.stdout.strip().splitlines()[-1])
            times[f"compile_{label}_s"] = probe["compile_s"]
            times["import_s"] = probe["import_s"]
    return times


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

    def on_the_fly(config: InputConfig, backend: str, output: str = "export"):
        def call() -> np.ndarray:
            with _backend(backend):
                maps = render_skeleton_maps(tensor, config, output=output)
            if maps.is_cuda:
                torch.cuda.synchronize()
            return maps.cpu().numpy()
        return call

    paths = {"torch": on_the_fly(cfg, "torch"), "reference": lambda: reference_render(poses, cfg)}
    if device == "cpu":
        paths["numba"] = on_the_fly(cfg, "numba")
    fps, maps = _rates(paths, frames, repeats)
    fast = "numba" if device == "cpu" else "torch"  # what render_skeleton_maps runs on this device
    result = {f"{name}_fps": value for name, value in fps.items()}
    result["fast_fps"] = fps[fast]
    result["ratio"] = fps[fast] / fps["reference"]
    result["torch_ratio"] = fps["torch"] / fps["reference"]
    result["max_level_diff"] = int(np.abs(maps[fast].astype(int) - maps["reference"].astype(int)).max())
    if device == "cpu":
        diff = np.abs(maps["numba"].astype(int) - maps["torch"].astype(int))
        result["numba_vs_torch_max"] = int(diff.max())
        result["numba_vs_torch_pixels"] = int((diff > 0).sum())
        result["pixels"] = int(diff.size)
    demo = load_profile("demo").base_config().input
    for sigma in (4.0, 6.0):
        demo_cfg = dataclasses.replace(demo, representation="body-only", sigma=sigma)
        demo_paths = {"torch": on_the_fly(demo_cfg, "torch", "model")}
        if device == "cpu":
            demo_paths["numba"] = on_the_fly(demo_cfg, "numba", "model")
        demo_fps, _ = _rates(demo_paths, frames, repeats)
        for name, value in demo_fps.items():
            result[f"demo_sigma{sigma:g}_{name}_fps"] = value
    write = _write_seconds_per_frame(maps["reference"][: min(frames, 300)])
    result["write_us_per_frame"] = write * 1e6
    result["export_ref_hours"] = RELEASE_FRAMES * (1.0 / fps["reference"] + write) / 3600
    result["export_fast_minutes"] = RELEASE_FRAMES * (1.0 / fps[fast] + write) / 60
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240, help="frames rendered per timing (%(default)s)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch (and numba) CPU threads (%(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the best is kept (%(default)s)")
    parser.add_argument("--skip-compile", action="store_true", help="do not time the numba compile")
    args = parser.parse_args()
    compiled = {} if args.skip_compile or args.device != "cpu" else compile_seconds(args.threads)
    r = run_benchmark(args.frames, args.device, args.threads, args.repeats)
    where = f"{args.device}, {args.threads} thread(s)"
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; timings interleaved, best of "
          f"{args.repeats}")
    if "numba_fps" in r:
        print(f"fused numba kernel ({where}), opengait defaults: {r['numba_fps']:9.1f} frames/s "
              f"({1e6 / r['numba_fps']:.1f} us/frame)")
    print(f"torch renderer ({where}), opengait defaults:      {r['torch_fps']:9.1f} frames/s")
    print(f"per-frame NumPy/OpenCV reference (1 core):        {r['reference_fps']:9.1f} frames/s")
    print(f"ratio: {r['ratio']:.1f}x on-the-fly / per-frame (goal >= 50x: {'met' if r['ratio'] >= 50 else 'missed'}; "
          f"torch path {r['torch_ratio']:.1f}x)   largest level difference to the reference: {r['max_level_diff']}")
    if "numba_vs_torch_max" in r:
        print(f"numba vs torch path: largest level difference {r['numba_vs_torch_max']}, "
              f"{r['numba_vs_torch_pixels']} of {r['pixels']:,} pixels differ")
    if compiled:
        print(f"numba compile in a fresh process: cold {compiled['compile_cold_s']:.1f} s, from the on-disk cache "
              f"{compiled['compile_cached_s']:.2f} s (imports before it: {compiled['import_s']:.1f} s)")
    for sigma in (4, 6):
        paths = ", ".join(f"{name} {r[f'demo_sigma{sigma}_{name}_fps']:.0f}" for name in ("numba", "torch")
                          if f"demo_sigma{sigma}_{name}_fps" in r)
        print(f"demo profile inputs (body-only, aligned, 64 -> 32x22) sigma {sigma} ({where}): {paths} frames/s")
    print(f"writing export pickles: {r['write_us_per_frame']:.1f} us/frame (measured on 4 x {min(args.frames, 300)} frames)")
    print(f"offline re-export of the release ({RELEASE_FRAMES:,} frames, extrapolated) per sigma value: "
          f"{r['export_ref_hours']:.2f} h with the per-frame pipeline, {r['export_fast_minutes']:.1f} min with "
          f"`scolio render`; on the fly: 0 (paid per batch, see benchmarks/train_step.py)")
    cold = f"; compile {compiled['compile_cold_s']:.0f} s cold, {compiled['compile_cached_s']:.1f} s cached" if compiled else ""
    print(f"SUMMARY render: on-the-fly {r['fast_fps']:.0f} fps vs per-frame {r['reference_fps']:.0f} fps "
          f"({r['ratio']:.1f}x, goal 50x; torch path {r['torch_ratio']:.1f}x) on {where}{cold}; demo inputs "
          f"{r.get('demo_sigma4_numba_fps', r['demo_sigma4_torch_fps']):.0f} fps at sigma 4; a per-sigma re-export "
          f"would cost {r['export_ref_hours']:.1f} h (extrapolated), on the fly 0")


if __name__ == "__main__":
    main()
