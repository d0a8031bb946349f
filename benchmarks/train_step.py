"""Training-step time of a sweep profile and the share of it spent rendering skeleton maps on the fly.

Run: python benchmarks/train_step.py                      # ~40 s: CPU demo profile (body-only, sigma 4)
     python benchmarks/train_step.py --sigma 6 --representation full-body --steps 20
     python benchmarks/train_step.py --profile paper       # default when CUDA is present: demo, then paper

The real loop (`scolio_core.training.loop.run_training`) runs a few steps on the profile's synthetic stand-in
(synthesised once into the sweeps' cache, ~/.cache/scoliotune, like a sweep does). The
loop's `frames_to_model_input` is wrapped with a timer, so each step's render time and the full step time
(from one render call to the next: batch draw, render, forward, backward, optimiser) come from the same
steps; the first --warmup steps are dropped and medians are printed. On CUDA the wrapper synchronises
around the render call so its time is the render's own. The paper profile (64 x 44 maps, width 64,
8 x 8 x 30 frames) runs only on CUDA unless named explicitly.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

# Runnable from a checkout without `pip install -e .`: put the repository root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scolio_core.training.loop as train_module
from scolio_core import names
from scolio_core.data.resolve import resolve_split
from scolio_core.data.stand_in import synthetic_root
from scolio_core.training.batches import load_trainval
from scolio_core.training.inference import pick_device
from scolio_sweep.settings.profile import load_profile


def measure(profile_name: str, steps: int, warmup: int, sigma: float | None, representation: str | None,
            threads: int) -> dict[str, float]:
    """Median step and render seconds over `steps` steps of the profile's base config."""
    torch.set_num_threads(threads)
    demo = load_profile("demo")
    root = synthetic_root(demo.synth, None)  # the demo stand-in serves both profiles (32 frames >= 30 drawn)
    profile = load_profile(profile_name)
    # Default: the profile's first point to evaluate (the published settings, scaled to its canvas).
    first = profile.points_to_evaluate[0] if profile.points_to_evaluate else {}
    representation = representation or first.get("input.representation", "body-only")
    sigma = sigma if sigma is not None else first.get("input.sigma", profile.base_config().input.sigma)
    partition = next(root.glob("Scoliosis1K_*.json"))
    total = warmup + steps + 1  # +1: a step is timed from its render call to the next one
    config = profile.base_config().replace(**{
        "data.root": str(root), "data.partition": str(partition), "input.representation": representation,
        "input.sigma": sigma, "train.iterations": total, "train.eval_every": total})
    data = load_trainval(config, resolve_split(config).trainval())

    original = train_module.frames_to_model_input
    starts: list[float] = []
    renders: list[float] = []

    def timed(frames: torch.Tensor, cfg):
        if frames.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = original(frames, cfg)
        if out.is_cuda:
            torch.cuda.synchronize()
        starts.append(start)
        renders.append(time.perf_counter() - start)
        return out

    reported: dict = {}
    train_module.frames_to_model_input = timed
    try:
        with tempfile.TemporaryDirectory() as workdir:
            train_module.run_training(config, data, workdir, lambda m, _ckpt: reported.update(m))
    finally:
        train_module.frames_to_model_input = original
    step_times = [b - a for a, b in zip(starts[warmup:], starts[warmup + 1:])]
    render_times = renders[warmup:warmup + len(step_times)]
    step, render = statistics.median(step_times), statistics.median(render_times)
    device = pick_device(config.train.device)
    frames = config.train.batch_ids * config.train.batch_samples * config.train.frames
    return {"step": step, "render": render, "share": render / step, "frames": frames,
            "loop_step_seconds": reported.get(names.METRIC_TRAIN_STEP_SECONDS, float("nan")), "device": str(device),
            "map": f"{config.input.frame_shape[0]}x{config.input.frame_shape[1]}", "width": config.model.width,
            "canvas": config.input.canvas_size, "sigma": sigma, "representation": representation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="append", help="demo and/or paper (default: demo; + paper on CUDA)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (%(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps (%(default)s)")
    parser.add_argument("--sigma", type=float, help="input.sigma in canvas pixels (default: the profile's first point)")
    parser.add_argument("--representation", help="skeleton representation (default: the profile's first point)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, as a 1-CPU trial (%(default)s)")
    args = parser.parse_args()
    profiles = args.profile or (["demo", "paper"] if torch.cuda.is_available() else ["demo"])
    summary = []
    for name in profiles:
        r = measure(name, args.steps, args.warmup, args.sigma, args.representation, args.threads)
        print(f"{name}: {r['device']}, {r['frames']} frames/batch, canvas {r['canvas']} -> {r['map']} maps, "
              f"width {r['width']}, {r['representation']} sigma {r['sigma']:g}: step {r['step'] * 1e3:.0f} ms (median of {args.steps}; "
              f"loop's own mean incl. warm-up {r['loop_step_seconds'] * 1e3:.0f} ms), render "
              f"{r['render'] * 1e3:.1f} ms = {100 * r['share']:.1f} % of the step "
              f"({r['frames'] / r['render']:.0f} frames/s)")
        summary.append(f"{name} {100 * r['share']:.1f} % of {r['step'] * 1e3:.0f} ms")
    print(f"SUMMARY train_step: on-the-fly rendering share (goal <= 10 % on the CPU demo): {'; '.join(summary)}")


if __name__ == "__main__":
    main()
