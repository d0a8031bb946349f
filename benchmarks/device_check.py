"""Verify and measure the GPU path in one command: training step, peak memory, half-GPU trials, NCCL data parallel.

Run: python benchmarks/device_check.py             # on a CUDA machine (~3-5 min with two GPUs)
     python benchmarks/device_check.py --dry-run   # the same code paths at tiny sizes on CPU (CI keeps it working)

Three checks, each printed, then one SUMMARY line with the numbers side by side:

1. step: the paper profile's training step (`scolio_core.training.loop.run_training`: AMP and channels-last on
   CUDA) timed by `benchmarks/train_step.py`'s `measure`, with the share of the step spent rendering skeleton
   maps on the GPU, and the peak GPU memory of that run (`torch.cuda.max_memory_allocated`).
2. fractional: two Tune trials of the real baseline trainable (`scolio_sweep.trainables.baseline`) started through the sweep
   driver's `scolio_sweep.engine.tuner.run_or_restore`, each requesting `gpus_per_trial: 0.5` on a Ray instance with one GPU:
   both must run at the same time (their start/end intervals overlap) on the same GPU id; each trial's own peak
   GPU memory is printed (Ray does not split memory: each half must fit).
3. ddp: one Tune trial trained by 2 Ray Train workers (`scolio_sweep.trainables.distributed`, NCCL, one GPU each) when two
   GPUs exist; otherwise skipped, with the reason printed.

`--dry-run` runs all three on CPU: the paper profile shrunk to the smoke model's size (width 8, 32x22 maps,
4 x 2 x 8 frames), two trials requesting half a CPU each (the request two half-GPU trials make, in CPUs: Ray's
bookkeeping only, CPUs have no ids to share), and the 2-worker trial over gloo. AMP and channels-last are CUDA-only in the loop, so the dry
run exercises everything but those two branches. Data: the demo stand-in, synthesised once into the sweeps'
cache (~/.cache/scoliotune), as train_step.py does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

# Runnable from a checkout without `pip install -e .`: put the repository root on the path.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from train_step import measure  # noqa: E402

from scolio_core import names  # noqa: E402
from scolio_core.config import ExperimentConfig  # noqa: E402
from scolio_core.data.resolve import resolve_split  # noqa: E402
from scolio_core.data.stand_in import synthetic_root  # noqa: E402
from scolio_sweep.settings.profile import PROFILE_DIR, load_profile  # noqa: E402

# The paper profile shrunk to the smoke profile's model and batch: the dry run's "paper" step.
DRY_RUN_FIXED = {
    "model.width": 8, "model.parts": 8, "input.canvas_size": 64, "input.map_size": 32, "input.side_crop": 5,
    "train.batch_ids": 4, "train.batch_samples": 2, "train.frames": 8, "train.max_eval_frames": 16,
    "train.eval_batch_size": 16, "train.device": "cpu",
}


def step_profile(dry_run: bool, workdir: Path) -> str:
    """The profile the step is measured on: `paper`, or for the dry run a copy of it at the smoke model's size."""
    if not dry_run:
        return "paper"
    profile = yaml.safe_load((PROFILE_DIR / "paper.yaml").read_text())
    profile["name"] = "paper-dry-run"
    profile["fixed"].update(DRY_RUN_FIXED)
    path = workdir / "paper_dry_run.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return str(path)


def check_step(profile: str, steps: int, warmup: int, threads: int) -> dict[str, Any]:
    """train_step.measure on `profile`, plus the peak GPU memory of the run (None on CPU)."""
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    result = measure(profile, steps, warmup, None, None, threads)
    result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20 if on_gpu else None
    result["amp_channels_last"] = result["device"].startswith("cuda") and load_profile(profile).base_config().train.amp
    return result


def trial_config(profile: str, iterations: int, eval_every: int) -> tuple[ExperimentConfig, Any]:
    """The step profile's base config on the demo stand-in, shortened for Tune trials, and its train/val split."""
    root = synthetic_root(load_profile("demo").synth, None)
    config = load_profile(profile).base_config().replace(**{
        "data.root": str(root), "data.partition": str(next(root.glob("Scoliosis1K_*.json"))),
        "input.representation": "body-only", "train.iterations": iterations, "train.eval_every": eval_every,
        "train.milestones": [iterations]})
    return config, resolve_split(config).trainval()


def timed_baseline(config: dict, split, out_dir: str) -> None:
    """The baseline trainable, recording when it ran, on which GPU and its peak GPU memory (one file per trial)."""
    import ray

    from scolio_sweep.trainables.baseline import train_baseline

    start = time.time()
    train_baseline(config, split)
    record = {"pid": os.getpid(), "start": start, "end": time.time(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
              "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None}
    Path(out_dir, f"trial-{os.getpid()}.json").write_text(json.dumps(record))


def recovered_failures(experiment: Path) -> list[str]:
    """Failures Tune retried (FailureConfig) in an experiment: each trial's error.txt keeps them after a successful
    retry, one "Failure # n" block each; the block's last line is the exception. A retry is worth seeing here."""
    found = []
    for path in sorted(experiment.glob("*/error.txt")):
        for block in path.read_text(errors="replace").split("Failure # ")[1:]:
            lines = [line.strip() for line in block.splitlines() if line.strip()]
            found.append(lines[-1][:300] if len(lines) > 1 else "?")
    return found


def check_fractional(config: ExperimentConfig, split, resources: dict[str, float], workdir: Path) -> dict[str, Any]:
    """Two trials whose requests fit one unit together; their run intervals must overlap."""
    from ray import tune

    from scolio_sweep.engine.tuner import run_or_restore

    out = workdir / "fractional"
    out.mkdir()
    space = {**config.for_trial().to_flat(), "train.seed": tune.grid_search([0, 1])}
    grid = run_or_restore(tune.with_parameters(timed_baseline, split=split, out_dir=str(out)), name="fractional",
                          storage_path=str(workdir / "ray_results"), param_space=space,
                          tune_config=tune.TuneConfig(max_concurrent_trials=2),
                          run_config_kwargs={"verbose": 0}, resources=resources)
    errors = [str(r.error)[-500:] for r in grid if r.error is not None]
    records = [json.loads(p.read_text()) for p in sorted(out.glob("trial-*.json"))]
    if errors or len(records) != 2:
        return {"ok": False, "why": errors or [f"{len(records)} of 2 trials recorded"]}
    starts, ends = [r["start"] for r in records], [r["end"] for r in records]
    overlap = min(ends) - max(starts)
    shortest = min(e - s for s, e in zip(starts, ends))
    same_gpu = records[0]["gpu_ids"] == records[1]["gpu_ids"]
    return {"ok": overlap > 0 and (same_gpu or not records[0]["gpu_ids"]), "overlap_s": overlap,
            "overlap_share": max(0.0, overlap) / shortest, "durations": [e - s for s, e in zip(starts, ends)],
            "gpu_ids": [r["gpu_ids"] for r in records], "peak_mib": [r["peak_mib"] for r in records],
            "retried": recovered_failures(workdir / "ray_results" / "fractional")}


def check_ddp(config: ExperimentConfig, split, gpus: int, workdir: Path) -> dict[str, Any]:
    """One Tune trial trained by 2 Ray Train workers: NCCL with one GPU each, or gloo on CPU (dry run)."""
    from ray import tune

    from scolio_sweep.engine.tuner import run_or_restore
    from scolio_sweep.trainables.distributed import data_parallel_trainable, driver_resources

    trainable = data_parallel_trainable(2, cpus_per_worker=1, gpus_per_worker=1 if gpus else 0)
    start = time.perf_counter()
    grid = run_or_restore(tune.with_parameters(trainable, split=split), name="ddp",
                          storage_path=str(workdir / "ray_results"), param_space=config.for_trial().to_flat(),
                          tune_config=tune.TuneConfig(), run_config_kwargs={"verbose": 0},
                          resources=driver_resources())
    result = grid[0]
    if result.error is not None:
        return {"ok": False, "why": str(result.error)[-1000:]}
    history = result.metrics_dataframe
    return {"ok": True, "backend": "nccl" if gpus else "gloo", "wall_s": time.perf_counter() - start,
            "iterations": int(history[names.METRIC_ITERATION].iloc[-1]),
            "step_s": statistics.median(history[names.METRIC_TRAIN_STEP_SECONDS]),
            "val_macro_f1": float(history[names.METRIC_VAL_MACRO_F1].iloc[-1]),
            "retried": recovered_failures(workdir / "ray_results" / "ddp")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (gloo, CPU resources)")
    parser.add_argument("--steps", type=int, help="timed training steps (default 10; dry run 3)")
    parser.add_argument("--warmup", type=int, help="untimed first steps (default 3; dry run 1)")
    parser.add_argument("--trial-iterations", type=int, help="steps per Tune trial (default 60; dry run 4)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("device_check: no CUDA device visible to torch (torch.cuda.is_available() is False); "
              "run with --dry-run to check the code paths on CPU", file=sys.stderr)
        return 2
    dry = args.dry_run
    gpus = 0 if dry else torch.cuda.device_count()
    steps, warmup = args.steps or (3 if dry else 10), args.warmup or (1 if dry else 3)
    iterations = args.trial_iterations or (4 if dry else 60)
    mode = "dry run (CPU, tiny sizes)" if dry else f"CUDA, {gpus} x {torch.cuda.get_device_name(0)}"
    print(f"device_check: {mode}; torch {torch.__version__}", flush=True)

    with tempfile.TemporaryDirectory(prefix="sdc") as tmp:  # short: Ray's socket paths are length-limited
        workdir = Path(tmp)
        profile = step_profile(dry, workdir)
        step = check_step(profile, steps, warmup, threads=1 if dry else 4)
        peak = f"{step['peak_mib']:.0f} MiB" if step["peak_mib"] is not None else "n/a (CPU)"
        print(f"step: {step['device']}, {step['frames']} frames/batch, {step['map']} maps, width {step['width']}, "
              f"AMP + channels-last {'on' if step['amp_channels_last'] else 'off (CPU)'}: "
              f"{step['step'] * 1e3:.0f} ms/step (median of {steps}), render {step['render'] * 1e3:.1f} ms = "
              f"{100 * step['share']:.1f} % of the step; peak GPU memory {peak}", flush=True)

        import ray

        from scolio_sweep.engine.tuner import connect_ray

        # Dry run: 3 CPUs, for the DDP trial's driver and its two gloo workers (the two half-CPU trials take one).
        connect_ray(num_cpus=3 if dry else None, temp_dir=str(workdir / "ray"), include_dashboard=False)
        try:
            config, split = trial_config(profile, iterations, eval_every=max(1, iterations // 2))
            resources = {"cpu": 0.5} if dry else {"cpu": max(1, min(4, (os.cpu_count() or 2) // 2)), "gpu": 0.5}
            frac = check_fractional(config, split, resources, workdir)
            if frac["ok"]:
                peaks = ", ".join(f"{p:.0f}" for p in frac["peak_mib"] if p is not None) or "n/a"
                print(f"fractional: 2 trials x {resources}: ran {frac['durations'][0]:.1f} s and "
                      f"{frac['durations'][1]:.1f} s, overlapping {frac['overlap_s']:.1f} s "
                      f"({100 * frac['overlap_share']:.0f} % of the shorter); GPU ids {frac['gpu_ids']}; "
                      f"peak GPU memory per trial {peaks} MiB; failures retried: {frac['retried'] or 'none'}",
                      flush=True)
            else:
                print(f"fractional: FAILED: {frac['why']}", flush=True)

            if dry or gpus >= 2:
                ddp = check_ddp(config, split, 0 if dry else gpus, workdir)
                if ddp["ok"]:
                    print(f"ddp: 2 workers over {ddp['backend']}: {ddp['iterations']} steps, median "
                          f"{ddp['step_s'] * 1e3:.0f} ms/step, val macro-F1 {ddp['val_macro_f1']:.3f}, "
                          f"{ddp['wall_s']:.0f} s in all; failures retried: {ddp['retried'] or 'none'}", flush=True)
                else:
                    print(f"ddp: FAILED: {ddp['why']}", flush=True)
            else:
                ddp = {"ok": None, "why": f"{gpus} GPU visible, NCCL data parallel needs 2"}
                print(f"ddp: skipped: {ddp['why']}", flush=True)
        finally:
            ray.shutdown()

    ddp_text = (f"ddp {ddp['backend']} 2 workers {ddp['step_s'] * 1e3:.0f} ms/step, {len(ddp['retried'])} retried"
                if ddp["ok"]
                else "ddp skipped (<2 GPUs)" if ddp["ok"] is None else "ddp FAILED")
    frac_text = (f"2 trials x {resources.get('gpu', resources['cpu'])} {'GPU' if 'gpu' in resources else 'CPU'} "
                 f"overlap {100 * frac['overlap_share']:.0f} %, {len(frac['retried'])} retried" if frac["ok"]
                 else "fractional FAILED")
    print(f"SUMMARY device_check ({'dry-run' if dry else 'cuda'}): step {step['step'] * 1e3:.0f} ms, render "
          f"{100 * step['share']:.1f} % | peak GPU {peak} | {frac_text} | {ddp_text}")
    return 0 if frac["ok"] and ddp["ok"] is not False else 1


if __name__ == "__main__":
    sys.exit(main())
