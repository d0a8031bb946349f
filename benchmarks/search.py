"""Search efficiency: ASHA+TPE vs random search vs a small grid at an equal trial budget.

Run: python benchmarks/search.py           # ~11 min on 2 shared CPU cores: grid once, random and ASHA+TPE x 3 seeds
     python benchmarks/search.py --quick   # one search seed (~5 min)

The space is small enough to enumerate: input.representation in {body-only, full-body, silhouette} x
loss.class_weighting in {plain, weighted} x input.sigma in {2, 4} (skeleton maps only; silhouettes have no
sigma), i.e. a grid of 2*2*2 + 1*2 = 10 points. Each method gets that many trials (10), 2 at a time:
 - grid: the 10 points, every trial to the full length (FIFO);
 - random: Optuna's RandomSampler (seeded) over the same conditional space, full length (FIFO);
 - ASHA+TPE: `sweeps.common.build_search` (seeded TPE + ASHA, grace 1 evaluation, reduction factor 3).
Trials are `trainables.baseline.train_baseline` with the smoke profile's fixed config (width 8, P x K = 4 x 2,
8 frames) for 48 optimiser steps, evaluated every 12 (4 Tune iterations per trial), in one local Ray, without
MLflow: this measures the search, not the tracking. The data are the demo-size synthetic stand-in (240
sequences; ~30 val): on the smoke-size one (60 sequences, 8 val) with 24 steps every trial collapsed to one
class (val macro-F1 0.222 for all), so every method "reached the grid's best" with its first trial
(`--data smoke --iterations 24 --eval-every 6` reproduces that). The training seed is fixed, so a config gives
the same val macro-F1 whichever method runs it, and the grid runs once.

Cost is counted in trial-iterations (optimiser steps actually run, from each trial's last reported
`iteration`), cumulated in trial completion order; a trial's score is its best val macro-F1 over its
reports (what selection uses). Per method and seed the table shows the cumulative cost when the running
best first reaches the grid's best, the final best and the total cost.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Runnable from a checkout without `pip install -e .`: put the repository root on the path.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from scolio_core.config import SKELETON_REPRESENTATIONS
from scolio_core.protocol import resolve_split
from sweeps.common import synthetic_root
from sweeps.profiles import SweepProfile, define_search_space, load_profile

SPACE: dict[str, dict[str, list]] = {
    "input.representation": {"choice": ["body-only", "full-body", "silhouette"]},
    "loss.class_weighting": {"choice": ["plain", "weighted"]},
    "input.sigma": {"choice": [2.0, 4.0]},
}
METHODS = ("grid", "random", "asha+tpe")
TIE = 1e-9  # macro-F1 values are ratios of small counts: compare with a tolerance, not ==


def grid_points() -> list[dict[str, Any]]:
    """Every point of SPACE, skipping sigma for silhouettes (10 points)."""
    points = []
    for rep, weighting in itertools.product(SPACE["input.representation"]["choice"],
                                            SPACE["loss.class_weighting"]["choice"]):
        sigmas = SPACE["input.sigma"]["choice"] if rep in SKELETON_REPRESENTATIONS else [None]
        for sigma in sigmas:
            point: dict[str, Any] = {"input.representation": rep, "loss.class_weighting": weighting}
            if sigma is not None:
                point["input.sigma"] = float(sigma)
            points.append(point)
    return points


def bench_profile(root: Path, seed: int, num_samples: int, iterations: int = 24,
                  eval_every: int = 6) -> SweepProfile:
    """The smoke profile's fixed config on `root`, searched over SPACE with ASHA (grace 1, reduction 3)."""
    smoke = load_profile("smoke")
    fixed = {**smoke.fixed, "data.root": str(root), "data.partition": str(root / smoke.fixed["data.partition"]),
             "train.iterations": iterations, "train.eval_every": eval_every}
    return SweepProfile(**{**smoke.__dict__, "name": "search-bench", "fixed": fixed, "search": SPACE,
                           "points_to_evaluate": [], "seed": seed, "asha": {"grace_period": 1, "reduction_factor": 3},
                           "budget": {"num_samples": num_samples, "max_concurrent_trials": 2}})


@dataclass
class TrialOutcome:
    trial_id: str
    point: dict[str, Any]
    iterations: int  # optimiser steps actually run
    best_f1: float  # best val macro-F1 over the trial's reports
    status: str  # finished | stopped (by ASHA) | error


def searchers():
    """Ray classes are imported lazily (the module docstring and --help need no Ray)."""
    from ray import tune
    from ray.tune.search import Searcher

    class GridPoints(Searcher):
        """Suggests the given points in order, then FINISHED (a conditional grid Tune's grid_search cannot express)."""

        def __init__(self, points: list[dict[str, Any]], metric: str, mode: str) -> None:
            super().__init__(metric=metric, mode=mode)
            self.points, self.next = list(points), 0

        def suggest(self, trial_id: str):
            if self.next >= len(self.points):
                return Searcher.FINISHED
            self.next += 1
            return dict(self.points[self.next - 1])

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            pass

    class TrialLog(tune.Callback):
        """Driver-side record of each trial's reports and the order trials end in."""

        def __init__(self, budget: int) -> None:
            self.budget = budget  # Tune iterations of a full-length trial
            self.best: dict[str, float] = {}
            self.ended: list[TrialOutcome] = []

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            f1 = float(result.get("val/macro_f1", float("nan")))
            if f1 == f1:
                self.best[trial.trial_id] = max(self.best.get(trial.trial_id, float("-inf")), f1)

        def _end(self, trial, status: str) -> None:
            last = trial.last_result or {}
            point = {k: trial.config[k] for k in SPACE if k in trial.config}
            if point.get("input.representation") not in SKELETON_REPRESENTATIONS:
                point.pop("input.sigma", None)
            self.ended.append(TrialOutcome(trial.trial_id, point, int(last.get("iteration", 0)),
                                           self.best.get(trial.trial_id, float("-inf")), status))

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            full = int((trial.last_result or {}).get("training_iteration", 0)) >= self.budget
            self._end(trial, "finished" if full else "stopped")

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._end(trial, "error")

    return GridPoints, TrialLog


def run_method(method: str, seed: int, profile: SweepProfile, split, storage: Path) -> tuple[list[TrialOutcome], float]:
    """One search; returns the trials in completion order and the wall time of `tuner.fit`."""
    import optuna
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from sweeps.common import build_search, short_trial_name
    from sweeps.engine import run_or_restore
    from trainables.baseline import train_baseline

    GridPoints, TrialLog = searchers()
    metric, mode = profile.metric, profile.mode
    scheduler = None
    if method == "grid":
        searcher = GridPoints(grid_points(), metric, mode)
    elif method == "random":
        searcher = OptunaSearch(space=define_search_space(profile), metric=metric, mode=mode,
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    else:
        searcher, scheduler = build_search(profile)
    log = TrialLog(profile.evaluations_per_trial)
    flat = profile.base_config().replace(**{"data.partition": ""}).to_flat()
    tune_config = tune.TuneConfig(metric=metric, mode=mode, scheduler=scheduler, num_samples=profile.num_samples,
                                  search_alg=ConcurrencyLimiter(searcher, max_concurrent=profile.max_concurrent_trials),
                                  trial_name_creator=short_trial_name, trial_dirname_creator=short_trial_name)
    run_config = {"checkpoint_config": tune.CheckpointConfig(num_to_keep=1), "verbose": 0}
    start = time.perf_counter()
    run_or_restore(tune.with_parameters(train_baseline, split=split), name=f"{method}-s{seed}",
                   storage_path=str(storage), param_space={k: v for k, v in flat.items() if k not in SPACE},
                   tune_config=tune_config, run_config_kwargs=run_config, callbacks=[log],
                   resources={"cpu": 1.0, "gpu": 0.0})
    return log.ended, time.perf_counter() - start


def trace(trials: list[TrialOutcome], target: float) -> tuple[int | None, float, int]:
    """(cumulative iterations when the running best first reaches `target` or None, final best, total)."""
    spent, best, reached = 0, float("-inf"), None
    for trial in trials:
        spent += trial.iterations
        best = max(best, trial.best_f1)
        if reached is None and best >= target - TIE:
            reached = spent
    return reached, best, spent


def describe(point: dict[str, Any]) -> str:
    sigma = f" sigma {point['input.sigma']:g}" if "input.sigma" in point else ""
    return f"{point.get('input.representation')} {point.get('loss.class_weighting')}{sigma}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds (%(default)s)")
    parser.add_argument("--quick", action="store_true", help="one search seed (0)")
    parser.add_argument("--data", choices=["demo", "smoke"], default="demo",
                        help="which profile's synthetic stand-in to train on (%(default)s)")
    parser.add_argument("--iterations", type=int, default=48, help="optimiser steps per full trial (%(default)s)")
    parser.add_argument("--eval-every", type=int, default=12, help="steps between evaluations (%(default)s)")
    parser.add_argument("--cache-dir", help="where the synthetic data set is cached (default: the sweeps' cache)")
    args = parser.parse_args()
    seeds = [0] if args.quick else args.seeds

    root = synthetic_root(load_profile(args.data), Path(args.cache_dir) if args.cache_dir else None)
    points = grid_points()

    def profile(seed: int) -> SweepProfile:
        return bench_profile(root, seed, len(points), args.iterations, args.eval_every)

    base = profile(0)
    split = resolve_split(base.base_config()).trainval()
    print(f"data: {root} ({len(split.train)} train / {len(split.val)} val sequences); grid of {len(points)} points "
          f"= trial budget per search; {base.base_config().train.iterations} iterations per full trial, "
          f"{base.evaluations_per_trial} evaluations; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
          flush=True)

    import ray

    from sweeps.engine import connect_ray

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    # No CSV/JSON/TensorBoard result files: TrialLog keeps what is measured. (Tune then warns at the end of
    # each fit that it could not fetch metrics for the result grid; harmless here.)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    runs: dict[tuple[str, int], list[TrialOutcome]] = {}
    walls: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="scolio-search-") as scratch:
        connect_ray(num_cpus=2, temp_dir=str(Path(scratch) / "ray"), include_dashboard=False)
        jobs = [("grid", 0)] + [(m, s) for s in seeds for m in ("random", "asha+tpe")]
        for method, seed in jobs:
            trials, wall = run_method(method, seed, profile(seed), split,
                                      Path(scratch) / "ray_results")
            runs[method, seed], walls[method, seed] = trials, wall
            errors = sum(t.status == "error" for t in trials)
            print(f"  {method} seed {seed}: {len(trials)} trials in {wall:.0f} s"
                  + (f" ({errors} errored)" if errors else ""), flush=True)
        ray.shutdown()

    grid = runs["grid", 0]
    grid_best = max(t.best_f1 for t in grid)
    print("\ngrid (completion order; iterations, best val macro-F1):")
    for trial in grid:
        print(f"  {describe(trial.point):28s} {trial.iterations:3d}  {trial.best_f1:.4f}")
    winners = [describe(t.point) for t in grid if t.best_f1 >= grid_best - TIE]
    print(f"grid best val macro-F1 {grid_best:.4f}, reached by {len(winners)} of {len(grid)} points "
          f"({'; '.join(winners)}); val has {len(split.val)} sequences, so ties are common and "
          "'reaching the grid's best' is coarse")

    # Determinism check: a full-length trial of a grid point must score what the grid scored.
    by_point = {describe(t.point): t.best_f1 for t in grid if t.status == "finished"}
    repeats = [(t.best_f1, by_point[describe(t.point)]) for (m, _), ts in runs.items() if m == "random"
               for t in ts if t.status == "finished" and describe(t.point) in by_point]
    same = sum(abs(a - b) <= TIE for a, b in repeats)
    print(f"determinism: {same} of {len(repeats)} full-length repeats of grid points in random search scored "
          "exactly the grid's value")

    print(f"\n{'method':10s} {'seed':>4s} {'iters to grid best':>18s} {'final best':>10s} {'total iters':>11s} "
          f"{'trials (stopped)':>16s} {'wall s':>7s}")
    reached: dict[str, list[int | None]] = {m: [] for m in METHODS}
    totals: dict[str, list[int]] = {m: [] for m in METHODS}
    for (method, seed), trials in runs.items():
        first, best, total = trace(trials, grid_best)
        reached[method].append(first)
        totals[method].append(total)
        stopped = sum(t.status == "stopped" for t in trials)
        print(f"{method:10s} {seed:4d} {first if first is not None else 'never':>18} {best:10.4f} {total:11d} "
              f"{f'{len(trials)} ({stopped})':>16s} {walls[method, seed]:7.0f}")

    grid_cost = reached["grid"][0]
    asha = reached["asha+tpe"]
    hit = [r for r in asha if r is not None]
    # A seed that never reached the grid's best is charged its whole spend: a lower bound on its true cost.
    charged = [r if r is not None else t for r, t in zip(asha, totals["asha+tpe"])]
    ratio = statistics.mean(charged) / grid_cost
    ratio_total = statistics.mean(charged) / totals["grid"][0]
    rand = [r if r is not None else t for r, t in zip(reached["random"], totals["random"])]
    print(f"\nASHA+TPE reached the grid's best in {len(hit)} of {len(asha)} seeds; mean iterations to it "
          f"{statistics.mean(charged):.0f} (never-reached seeds charged their total, a lower bound) vs grid "
          f"{grid_cost} (its best point's place in the enumeration order) and {totals['grid'][0]} (the full grid)")
    print(f"ratio ASHA+TPE / grid iterations-to-grid-best: {ratio:.2f} (goal <= 0.33: "
          f"{'met' if ratio <= 1 / 3 else 'missed'}); vs the full grid: {ratio_total:.2f}; random search: "
          f"{statistics.mean(rand) / grid_cost:.2f}")
    print(f"SUMMARY search: ASHA+TPE reaches the grid's best val macro-F1 ({grid_best:.4f}) in "
          f"{statistics.mean(charged):.0f} trial-iterations (mean of {len(asha)} seeds, {len(hit)} reached) vs "
          f"{grid_cost} for the grid: ratio {ratio:.2f} (goal 0.33, {'met' if ratio <= 1 / 3 else 'missed'}); "
          f"random {statistics.mean(rand):.0f}; totals ASHA+TPE {statistics.mean(totals['asha+tpe']):.0f}, "
          f"random {statistics.mean(totals['random']):.0f}, grid {totals['grid'][0]}")


if __name__ == "__main__":
    main()
