"""What the orchestration costs: one fixed trial as a bare loop vs as a Tune trial with MLflow tracking.

Run: python benchmarks/overhead.py                  # ~5 min on 2 CPU cores: demo profile, 50 iterations
     python benchmarks/overhead.py --iterations 150 # the demo's full trial length

The same config (the demo profile's first point: body-only maps, sigma 4; fixed seed and iterations) runs
 1. bare: `load_trainval` + `scolio_core.training.loop.run_training` in this process with a no-op report, 1 thread;
 2. tuned: one trial of `scolio_sweep.trainables.baseline.train_baseline` through `scolio_sweep.engine.tuner.run_or_restore` (a
    private local Ray, 1 CPU per trial), with `scolio_sweep.engine.callbacks.MLflowLifecycle` logging to a temporary
    sqlite store and checkpoints every `train.eval_every` iterations (the profile's frequency) persisted
    by Tune and the best one uploaded to MLflow at the end, as a sweep does;
 3. a run of `--trials` such trials one after another, each in a new worker process and then with reused
    actors (`reuse_actors`, what scolio_sweep/stages/run.py sets): the fixed cost each trial pays beyond the bare loop.
Steady state compares the loop's own `train/step_seconds` (mean step time per evaluation window; the first
window holds the warm-up and is dropped). The fixed cost is reported separately: Ray start-up, and the
rest of the tuned wall time that the per-step difference does not explain (worker start, data load in
the worker, checkpoint persistence, MLflow runs and the artifact upload).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

# Runnable from a checkout without `pip install -e .`: put the repository root on the path.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from scolio_core import names
from scolio_core.config import ExperimentConfig
from scolio_core.data.resolve import resolve_split
from scolio_core.data.stand_in import synthetic_root
from scolio_core.training.batches import load_trainval
from scolio_core.training.loop import run_training
from scolio_sweep.settings.profile import load_profile


def trial_config(iterations: int) -> ExperimentConfig:
    profile = load_profile("demo")
    root = synthetic_root(profile.synth, None)
    point = {k: v for k, v in profile.points_to_evaluate[0].items()}
    return profile.base_config().replace(**{
        **point, "data.root": str(root), "data.partition": str(root / profile.fixed["data.partition"]),
        "train.iterations": iterations, "train.device": "cpu"})


def steady_step(windows: list[float]) -> float:
    """Mean step seconds over the evaluation windows after the first (which holds the warm-up)."""
    return statistics.mean(windows[1:] if len(windows) > 1 else windows)


def run_bare(config: ExperimentConfig) -> dict:
    torch.set_num_threads(1)  # what a 1-CPU Ray worker gets (Ray sets OMP_NUM_THREADS=1)
    windows: list[float] = []
    start = time.perf_counter()
    data = load_trainval(config, resolve_split(config).trainval())
    with tempfile.TemporaryDirectory() as workdir:
        run_training(config, data, workdir, lambda m, _c: windows.append(m[names.METRIC_TRAIN_STEP_SECONDS]))
    return {"wall": time.perf_counter() - start, "windows": windows}


def run_tuned(config: ExperimentConfig, scratch: Path, trials: int = 1, reuse_actors: bool = False,
              name: str = "overhead") -> dict:
    import ray
    from ray import tune

    from scolio_sweep.engine.callbacks import MLflowLifecycle
    from scolio_sweep.engine.tuner import connect_ray, run_or_restore
    from scolio_sweep.trainables.baseline import train_baseline

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    split = resolve_split(config).trainval()
    start = time.perf_counter()
    connect_ray(num_cpus=2, temp_dir=str(scratch / "ray"), include_dashboard=False)
    ray_start = time.perf_counter() - start
    tracking_uri = f"sqlite:///{scratch / 'mlflow.db'}"
    callback = MLflowLifecycle(tracking_uri, "overhead-benchmark", "overhead", metric=names.DEFAULT_METRIC, mode="max",
                               budget=config.train.iterations // config.train.eval_every)
    # `trials` identical trials one after another (1 CPU each, one at a time): with reuse_actors the second and
    # later ones run in the first one's worker process, as scolio_sweep/stages/run.py runs them.
    tune_config = tune.TuneConfig(metric=names.DEFAULT_METRIC, mode="max", num_samples=trials, max_concurrent_trials=1,
                                  reuse_actors=reuse_actors)
    run_config = {"checkpoint_config": tune.CheckpointConfig(num_to_keep=2,
                                                             checkpoint_score_attribute=names.DEFAULT_METRIC,
                                                             checkpoint_score_order="max"), "verbose": 0}
    fit_start = time.perf_counter()
    results = run_or_restore(tune.with_parameters(train_baseline, split=split), name=name,
                             storage_path=str(scratch / "ray_results"),
                             param_space=config.for_trial().to_flat(),
                             tune_config=tune_config, run_config_kwargs=run_config, callbacks=[callback],
                             resources={"cpu": 1.0, "gpu": 0.0})
    fit_wall = time.perf_counter() - fit_start
    history = results[0].metrics_dataframe
    windows = [float(v) for v in history[names.METRIC_TRAIN_STEP_SECONDS]]
    pids = {int(r.metrics_dataframe["pid"].iloc[0]) for r in results if "pid" in r.metrics_dataframe}
    ray.shutdown()
    return {"ray_start": ray_start, "wall": fit_wall, "windows": windows, "processes": len(pids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50, help="optimiser steps per trial (%(default)s)")
    parser.add_argument("--trials", type=int, default=4,
                        help="trials in a row for the per-trial fixed cost, with and without actor reuse (%(default)s)")
    args = parser.parse_args()
    config = trial_config(args.iterations)
    evals = -(-args.iterations // config.train.eval_every)
    print(f"trial: demo profile, {args.iterations} iterations, eval + checkpoint every "
          f"{config.train.eval_every} ({evals} evaluations)", flush=True)
    bare = run_bare(config)
    with tempfile.TemporaryDirectory(prefix="scolio-ovh-") as scratch:
        tuned = run_tuned(config, Path(scratch))
    # Per-trial fixed cost over a run of trials: (fit wall - trials x bare wall) / trials, fresh processes vs
    # reused actors (what a sweep's trials pay after its first).
    runs = {}
    for reuse in (False, True):
        with tempfile.TemporaryDirectory(prefix="scolio-ovh-") as scratch:
            runs[reuse] = run_tuned(config, Path(scratch), trials=args.trials, reuse_actors=reuse,
                                    name=f"overhead-{'reuse' if reuse else 'fresh'}")
    per_trial = {reuse: (run["wall"] - args.trials * bare["wall"]) / args.trials for reuse, run in runs.items()}
    step_bare, step_tuned = steady_step(bare["windows"]), steady_step(tuned["windows"])
    ratio = step_tuned / step_bare
    fixed = tuned["wall"] - bare["wall"] - args.iterations * (step_tuned - step_bare)
    print(f"bare loop:  wall {bare['wall']:.1f} s (incl. data load), steady step {step_bare * 1e3:.0f} ms "
          f"(windows: {', '.join(f'{w * 1e3:.0f}' for w in bare['windows'])} ms)")
    print(f"Tune trial: wall {tuned['wall']:.1f} s for tuner.fit, steady step {step_tuned * 1e3:.0f} ms "
          f"(windows: {', '.join(f'{w * 1e3:.0f}' for w in tuned['windows'])} ms); Ray start-up "
          f"{tuned['ray_start']:.1f} s")
    print(f"steady-state per-step ratio Tune/bare: {ratio:.3f} (goal <= 1.05)")
    print(f"fixed cost of the Tune trial beyond the per-step difference: {fixed:.1f} s "
          f"(+ {tuned['ray_start']:.1f} s Ray start-up once per sweep)")
    for reuse, run in runs.items():
        print(f"{args.trials} trials in a row, {'reused actors' if reuse else 'a new process each'}: fit wall "
              f"{run['wall']:.1f} s in {run['processes']} worker process(es); fixed cost per trial "
              f"{per_trial[reuse]:.1f} s beyond the bare loop's wall (negative: the trial skipped work the bare "
              "loop pays every time, such as its own data load)")
    print(f"SUMMARY overhead: steady-state step ratio {ratio:.3f} (goal 1.05); fixed cost {fixed:.1f} s for a lone "
          f"trial + {tuned['ray_start']:.1f} s Ray start-up per sweep; per trial in a run of {args.trials}: "
          f"{per_trial[True]:.1f} s with reused actors (the sweeps' setting; goal <= 2) vs {per_trial[False]:.1f} s "
          "with a new process each")


if __name__ == "__main__":
    main()
