"""Search efficiency: ASHA+TPE vs random search vs grid, as a tabular (record-then-replay) benchmark.

Run: python benchmarks/search.py            # ~35-45 min on 2 shared CPU cores (phase 1, real checks, replays)
     python benchmarks/search.py --quick    # 6-point space, short trials, 2 replay seeds (~5 min)
     python benchmarks/search.py --table T.json   # skip phase 1 and the real checks: replay a saved record
     python benchmarks/search.py --compare-budget SHORT.json FULL.json   # compressed vs full schedules
     python benchmarks/search.py --truth-seeds 3 --seeds 0 --save R.json   # the grid with ground truth (~60 min)
     python benchmarks/search.py --table R.json   # replays, then regret against R's ground truth
     python benchmarks/search.py --table benchmarks/search_record_truth_draws_2026-12-06.json --time-scale 0.002
                                                  # a record with noise draws: benchmarks/selection.py (~4 min)

Phase 1 (real): every point of a discrete space (representation x sigma (skeleton maps only) x class
weighting x train.lr, 30 points) trains to the full budget under Ray Tune with `scolio_sweep.trainables.baseline`,
2 trials at a time, and the val macro-F1 of every evaluation is recorded with its wall time. The training
seed is fixed, so a config's curve is deterministic: two points are re-run and must give identical curves,
and one real ASHA+TPE search (seed 0) is run for the replay check below.

Phase 2 (replay, as tabular benchmarks such as HPOBench or NAS-Bench do): the searches run under real Ray
Tune (OptunaSearch TPE + ASHAScheduler from `scolio_sweep.stages.run.build_search`, and Optuna's RandomSampler) but
the trainable reports the recorded curve of the config it is given, sleeping the recorded time of each
evaluation scaled down, so concurrency and the order of reports behave as in real trials. Many seeds
per method are then cheap. Check: the replay of the real seed-0 ASHA+TPE search must suggest the same
configs, stop them at the same rungs and reach the same best. That check runs one trial at a time: with
two, which trial reaches a rung first is decided by timing noise in real runs as in replays, so the seed-0
replay is also repeated at two at a time to show how much timing alone moves the outcome.

Ground truth (`--truth-seeds N`, benchmarks/ground_truth.py): phase 1 instead records the grid at training
seeds 0..N-1, and scores every model a replayed method could test on a large fresh population of the same
generator (another seed, never used for a choice). The replays then end with what each method would send to
the test look: its regret against the best point's true score, the compute it spent (confirmation included)
and the optimism of the val number it reports; `pipeline` is what the sweeps run (late rung, 8 samples, top 2
confirmed with 2 new seeds) and gets the closing `SUMMARY selection` line.

Cost is trial-iterations (optimiser steps actually run), summed over trials in completion order until the
method first holds a trial whose best val macro-F1 over its reports (what selection uses) reaches the grid's
best; a seed that never reaches it is charged its whole spend and counted as a failure. The grid's cost is
the expected cost over random enumeration orders, (N+1)/(k+1) full trials when k of N points tie for the
best, and also the cost in this script's enumeration order.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# Runnable from a checkout without `pip install -e .`: put the repository root on the path.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.ground_truth import rank as rank_trials
from scolio_core import CLASS_NAMES, names
from scolio_core.config import SKELETON_REPRESENTATIONS
from scolio_core.data.stand_in import SynthSettings
from scolio_sweep.search.rungs import rung_milestones
from scolio_sweep.search.space import parse_distribution
from scolio_sweep.settings.profile import AshaSchedule, Budget, SweepProfile, load_profile

SPACE: dict[str, dict[str, list]] = {
    "input.representation": {"choice": ["body-only", "full-body", "silhouette"]},
    "input.sigma": {"choice": [2.0, 4.0]},
    "loss.class_weighting": {"choice": ["plain", "weighted"]},
    "train.lr": {"choice": [0.03, 0.1, 0.3]},
}
QUICK_SPACE: dict[str, dict[str, list]] = {**SPACE, "input.sigma": {"choice": [4.0]}, "train.lr": {"choice": [0.1]}}
# 480 sequences -> 239 train ids, of which val_fraction 0.3 carves 72 val ids (one sequence ~ 0.014 macro-F1).
SYNTH = {"num_sequences": 480, "frames": 32, "train_ratio": "1:1:2", "seed": 0}
METRIC = names.DEFAULT_METRIC
TIE = 1e-9  # curves are bit-identical re-runs; the tolerance only absorbs float printing round trips
# The sweeps' demo profile (demo.yaml) searches with ASHA grace 2, reduction 3: the primary setting here.
# "reproducible": the sweeps' default (scolio_sweep/search/searchers.py BatchedSuccessiveHalving: batches of concurrent
# trials, each rung compared only with earlier batches); without it, Ray's asynchronous ASHA (budget.reproducible
# false), which the record's real search used.
VARIANTS: dict[str, dict[str, Any]] = {
    "random": {"kind": "random"},
    "asha+tpe": {"kind": "asha+tpe", "asha": {"grace_period": 2, "reduction_factor": 3}},
    "asha+tpe g1": {"kind": "asha+tpe", "asha": {"grace_period": 1, "reduction_factor": 3}},
    "batched+tpe": {"kind": "asha+tpe", "asha": {"grace_period": 2, "reduction_factor": 3}, "reproducible": True},
    # the sweeps' rule since 2026-12-01: the only rung after the last lr decay (step 200 -> evaluation 9 of 10)
    "batched+tpe late": {"kind": "asha+tpe", "asha": {"grace_period": 9, "reduction_factor": 3},
                         "reproducible": True},
    "tpe (fifo)": {"kind": "tpe"},
    # The pipeline the sweeps run since 2026-12-01: the late rung, the demo's 8 samples, and the confirmation
    # (top 2 re-trained with 2 new seeds, scolio_sweep/stages/confirm.py). Its ground truth needs a record with 3 seeds.
    "pipeline": {"kind": "asha+tpe", "asha": {"grace_period": 9, "reduction_factor": 3}, "reproducible": True,
                 "samples": 8, "confirm": (2, 2)},
    # 6 samples: the pipeline inside a third of the grid's compute (6 x ~0.95 + 4 confirmation trainings of 30)
    "pipeline n6": {"kind": "asha+tpe", "asha": {"grace_period": 9, "reduction_factor": 3}, "reproducible": True,
                    "samples": 6, "confirm": (2, 2)},
    # the same search without the confirmation: what the confirmation adds
    "late n8": {"kind": "asha+tpe", "asha": {"grace_period": 9, "reduction_factor": 3}, "reproducible": True,
                "samples": 8},
}
PRIMARY = "asha+tpe"
REPRODUCIBLE = "batched+tpe"


# ----------------------------------------------------------------------------------------------- pure helpers

def grid_points(space: dict[str, dict[str, list]]) -> list[dict[str, Any]]:
    """Every point of a discrete space in a fixed order; skeleton-only knobs (sigma) only for skeleton maps."""
    keys = list(space)
    points, seen = [], set()
    for values in itertools.product(*(space[k]["choice"] for k in keys)):
        point = dict(zip(keys, values))
        if point.get("input.representation") not in SKELETON_REPRESENTATIONS:
            point.pop("input.sigma", None)
        key = point_key(point)
        if key not in seen:
            seen.add(key)
            points.append(point)
    return points


def point_key(config: dict[str, Any]) -> str:
    """A canonical name for a point of SPACE, from a trial config (extra keys ignored; no sigma for silhouettes)."""
    rep = config.get("input.representation")
    parts = [str(rep)]
    if rep in SKELETON_REPRESENTATIONS and "input.sigma" in config:
        parts.append(f"sigma {float(config['input.sigma']):g}")
    parts.append(str(config.get("loss.class_weighting")))
    if "train.lr" in config:
        parts.append(f"lr {float(config['train.lr']):g}")
    return " ".join(parts)


def cost_to_target(trials: Sequence[tuple[int, float]], target: float) -> tuple[int | None, int, float]:
    """Trials as (iterations run, best score) in completion order -> (cumulative iterations when the running
    best first reaches `target`, or None; total iterations; final best)."""
    spent, best, reached = 0, float("-inf"), None
    for iterations, score in trials:
        spent += iterations
        best = max(best, score)
        if reached is None and best >= target - TIE:
            reached = spent
    return reached, spent, best


def grid_expected_trials(num_points: int, num_best: int) -> float:
    """Expected number of full trials a grid in uniformly random order runs until it first hits one of the
    `num_best` tied best points: (N+1)/(k+1), the mean position of the first of k marked items among N."""
    if not 1 <= num_best <= num_points:
        raise ValueError(f"need 1 <= num_best <= num_points, got {num_best} of {num_points}")
    return (num_points + 1) / (num_best + 1)


def charged(reached: int | None, total: int) -> int:
    """A seed that never reached the target is charged its whole spend (a lower bound on its true cost)."""
    return total if reached is None else reached


# ------------------------------------------------------------------------------------------------ records

@dataclass
class TrialRecord:
    trial_id: str
    key: str
    config: dict[str, Any]
    reports: list[tuple[int, int, float, float]] = field(default_factory=list)  # (tune iter, steps, f1, secs)
    status: str = "running"  # finished | stopped (by ASHA) | error
    order: int = 0  # 1-based start order (trials start in the order the searcher suggested them)

    @property
    def iterations(self) -> int:
        return self.reports[-1][1] if self.reports else 0

    @property
    def best(self) -> float:
        return max((r[2] for r in self.reports), default=float("-inf"))

    @property
    def evaluations(self) -> int:
        return self.reports[-1][0] if self.reports else 0


def bench_profile(root: Path, space: dict, seed: int, num_samples: int, iterations: int, eval_every: int,
                  asha: dict | None = None, concurrency: int = 2, reproducible: bool = False) -> SweepProfile:
    """The smoke model (width 8, P x K = 4 x 2, 8 frames) on the larger stand-in; the demo's search settings."""
    smoke, demo = load_profile("smoke"), load_profile("demo")
    fixed = {**smoke.fixed, "data.root": str(root), "data.partition": str(root / smoke.fixed["data.partition"]),
             "data.val_fraction": 0.3, "train.iterations": iterations, "train.eval_every": eval_every,
             # lr decay late in training, as the profiles do, so that curves settle before the end
             "train.milestones": [round(iterations * 2 / 3), round(iterations * 5 / 6)],
             "train.max_eval_frames": 32}
    # The demo's published-defaults-first points, cut down to this space's keys.
    points = [{k: v for k, v in p.items() if k in space} for p in demo.points_to_evaluate]
    points = [p for p in points if point_key(p) in {point_key(g) for g in grid_points(space)}]
    return smoke.replace(name="search-bench", fixed=fixed, points_to_evaluate=points, seed=seed,
                         search={k: parse_distribution(v, f"search.{k}") for k, v in space.items()},
                         asha=AshaSchedule(**asha) if asha else demo.asha,
                         budget=Budget(num_samples=num_samples, max_concurrent_trials=concurrency,
                                       reproducible=reproducible))


def ray_parts():
    """Ray-dependent classes, imported lazily (--help and the unit tests need no Ray)."""
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
        """Driver-side record of every report and of the order trials end in."""

        def __init__(self, budget: int) -> None:
            self.budget = budget  # Tune iterations of a full-length trial
            self.trials: dict[str, TrialRecord] = {}
            self.started: list[str] = []  # Tune's trial ids are random hex: keep the creation order here
            self.ended: list[TrialRecord] = []

        def _record(self, trial) -> TrialRecord:
            if trial.trial_id not in self.trials:
                config = {k: trial.config[k] for k in SPACE if k in trial.config}
                self.trials[trial.trial_id] = TrialRecord(trial.trial_id, point_key(config), config)
            return self.trials[trial.trial_id]

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            if trial.trial_id not in self.started:
                self.started.append(trial.trial_id)
                self._record(trial).order = len(self.started)

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            f1 = float(result.get(METRIC, float("nan")))
            if f1 == f1:
                self._record(trial).reports.append((int(result["training_iteration"]),
                                                    int(result[names.METRIC_ITERATION]), f1,
                                                    float(result.get("time_this_iter_s", 0.0))))

        def _end(self, trial, status: str) -> None:
            record = self._record(trial)
            record.status = status
            self.ended.append(record)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            full = int((trial.last_result or {}).get("training_iteration", 0)) >= self.budget
            self._end(trial, "finished" if full else "stopped")

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._end(trial, "error")

    return GridPoints, TrialLog


def replay_trainable(config: dict, table: dict, time_scale: float) -> None:
    """Reports the recorded curve of `config`'s point, sleeping each evaluation's recorded time x time_scale."""
    from scolio_sweep.trainables._tune_report import tune_reporter

    report = tune_reporter()
    for _tune_iter, steps, f1, seconds in table[point_key(config)]:
        time.sleep(seconds * time_scale)
        report({METRIC: f1, names.METRIC_ITERATION: steps}, None)


def run_search(variant: str, seed: int, profile: SweepProfile, trainable, storage: Path,
               points: list[dict[str, Any]] | None = None, reuse_actors: bool = False
               ) -> tuple[list[TrialRecord], float]:
    """One search under Tune; returns the trials in completion order and the wall time of the fit.
    Replays reuse actors: a replayed trial then costs its sleeps, not a worker start (real trials do not)."""
    import optuna
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from scolio_sweep.engine.tuner import run_or_restore
    from scolio_sweep.settings.profile import define_search_space
    from scolio_sweep.stages.run import build_search, short_trial_name

    GridPoints, TrialLog = ray_parts()
    kind = "grid" if points is not None else VARIANTS[variant]["kind"]
    metric, mode = profile.metric, profile.mode
    scheduler = None
    if kind == "grid":
        searcher = GridPoints(points, metric, mode)
    elif kind == "random":
        searcher = OptunaSearch(space=define_search_space(profile), metric=metric, mode=mode,
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    else:
        # the record's rungs (2 and 6) fall before its lr decay: replayed as recorded, to compare
        searcher, scheduler = build_search(profile, allow_rungs_before_decay=True)
        if kind == "tpe":
            scheduler = None
    log = TrialLog(profile.evaluations_per_trial)
    flat = profile.base_config().for_trial().to_flat()
    tune_config = tune.TuneConfig(metric=metric, mode=mode, scheduler=scheduler,
                                  num_samples=len(points) if points is not None else profile.num_samples,
                                  search_alg=ConcurrencyLimiter(searcher, max_concurrent=profile.max_concurrent_trials,
                                                                batch=profile.budget.reproducible),
                                  reuse_actors=reuse_actors,
                                  trial_name_creator=short_trial_name, trial_dirname_creator=short_trial_name)
    run_config = {"checkpoint_config": tune.CheckpointConfig(num_to_keep=1), "verbose": 0}
    start = time.perf_counter()
    run_or_restore(trainable, name=f"{variant}-s{seed}-{time.monotonic_ns()}", storage_path=str(storage),
                   param_space={k: v for k, v in flat.items() if k not in profile.search},
                   tune_config=tune_config, run_config_kwargs=run_config, callbacks=[log],
                   resources={"cpu": 1.0, "gpu": 0.0})
    return log.ended, time.perf_counter() - start


def decisions(trials: list[TrialRecord]) -> list[tuple[str, int]]:
    """(point, evaluations run) per trial in start order, i.e. the searcher's suggestion order."""
    return [(t.key, t.evaluations) for t in sorted(trials, key=lambda t: t.order)]


def decisions_match(a: list[TrialRecord], b: list[TrialRecord]) -> tuple[bool, bool]:
    """(same in start order, same as a multiset): trials of one batch start in an order timing decides, while
    what was suggested and where each stopped is the multiset."""
    return decisions(a) == decisions(b), sorted(decisions(a)) == sorted(decisions(b))


# ------------------------------------------------------------------------------------------------- phases

def phase1(args, root: Path, space: dict, split, storage: Path) -> dict:
    """Real trials: the grid, a determinism re-run of 2 points, one real ASHA+TPE search (seed 0)."""
    from ray import tune

    from scolio_sweep.trainables.baseline import train_baseline

    points = grid_points(space)
    profile = bench_profile(root, space, 0, len(points), args.iterations, args.eval_every)
    trainable = tune.with_parameters(train_baseline, split=split)
    grid, wall = run_search("grid", 0, profile, trainable, storage, points=points)
    print(f"  grid: {len(grid)} trials in {wall:.0f} s (load average {os.getloadavg()[0]:.1f})", flush=True)
    record: dict[str, Any] = {"grid": [asdict(t) for t in grid], "grid_wall_s": wall,
                              "load_after_grid": os.getloadavg()[0]}
    by_key = {t.key: t for t in grid}
    # Determinism: the best and the worst point again, each run alone-in-pair like the grid did.
    ranked = sorted(grid, key=lambda t: t.best)
    again_points = [ranked[-1].config, ranked[0].config]
    again, wall = run_search("repeat", 0, profile, trainable, storage, points=again_points)
    same = [[r[2] for r in t.reports] == [r[2] for r in by_key[t.key].reports] for t in again]
    for t in again:
        print(f"  determinism {t.key}: grid {[round(r[2], 4) for r in by_key[t.key].reports]}")
        print(f"  {'':{len('determinism ' + t.key)}s}  re-run {[round(r[2], 4) for r in t.reports]}")
    print(f"  determinism: {sum(same)} of {len(again)} re-runs gave identical curves ({wall:.0f} s)", flush=True)
    record["determinism"] = {"same": sum(same), "runs": len(again)}
    # One trial at a time: with 2, which of two trials reaches a rung first is decided by timing noise
    # (the same config's evaluation time varies up to 2x here), so no replay could match it exactly.
    real_profile = bench_profile(root, space, 0, len(points), args.iterations, args.eval_every,
                                 VARIANTS[PRIMARY]["asha"], concurrency=1)
    real, wall = run_search(PRIMARY, 0, real_profile, trainable, storage)
    print(f"  real {PRIMARY} seed 0, 1 trial at a time: {len(real)} trials in {wall:.0f} s", flush=True)
    record["real_asha"] = [asdict(t) for t in real]
    record["real_asha_wall_s"] = wall
    return record


def phase1_truth(args, root: Path, space: dict, split, storage: Path, rungs: list[int]) -> dict:
    """The grid at training seeds 0..truth_seeds-1, each model selection could test scored on a fresh
    population (benchmarks/ground_truth.py); the record is saved after each seed."""
    from ray import tune

    from benchmarks.ground_truth import collect, decision_points, population, truth_trainable

    points = grid_points(space)
    profile = bench_profile(root, space, 0, len(points), args.iterations, args.eval_every)
    start = time.perf_counter()
    population_root, population_ids = population(Path(args.cache_dir) if args.cache_dir else None,
                                                  args.population // 3, SYNTH["frames"])
    decisions = decision_points(profile.evaluations_per_trial, rungs)
    print(f"  population: {len(population_ids)} sequences ({len(population_ids) // 3} per class) in "
          f"{population_root} ({time.perf_counter() - start:.0f} s); models scored at evaluations {decisions}",
          flush=True)
    classes = {i: row["class"] for i, row in
               json.loads((population_root / "synth_meta.json").read_text())["sequences"].items()}
    record: dict[str, Any] = {"population": {"root": population_root.name, "sequences": len(population_ids),
                                             "labels": [CLASS_NAMES.index(classes[i]) for i in population_ids]},
                              "val_ids": list(split.val), "decisions": decisions, "grid_seeds": {}, "truth": {},
                              "draw_size": args.draw_size}
    first = args.truth_seed_from
    logits: dict[str, Any] = {}
    for seed in range(first, first + args.truth_seeds):
        out = storage.parent / "truth" / f"seed{seed}"
        out.mkdir(parents=True, exist_ok=True)
        # A draw's first seed is its search seed; the confirmation's seeds are only ever tested at the full
        # budget: score only that model there.
        scored_at = decisions if (seed - first) % args.draw_size == 0 else decisions[-1:]
        trainable = tune.with_parameters(truth_trainable, split=split, population_root=str(population_root),
                                         population_ids=population_ids, decisions=scored_at, searched=list(space),
                                         out_dir=str(out))
        grid, wall = run_search("grid", 0, profile, trainable, storage,
                                points=[{**p, "train.seed": seed} for p in points])
        print(f"  grid at train.seed {seed}: {len(grid)} trials in {wall:.0f} s (load average "
              f"{os.getloadavg()[0]:.1f})", flush=True)
        if seed == first:
            record.update({"grid": [asdict(t) for t in grid], "grid_wall_s": wall, "grid_seed": seed})
        else:
            record["grid_seeds"][str(seed)] = [asdict(t) for t in grid]
        record["truth"].update(collect(out, point_key))
        for key, row in record["truth"][str(seed)].items():
            if row.get("population_logits"):  # a file name in the trial's folder -> a key of the npz beside
                logits[f"{seed}|{key}"] = np.load(out / row["population_logits"])
                row["population_logits"] = f"{seed}|{key}"
        if args.save:  # after each seed: a crash keeps what was measured
            Path(args.save).write_text(json.dumps(record))
            np.savez_compressed(logits_path(Path(args.save)), **logits)
    return record


def logits_path(record_path: Path) -> Path:
    """The population logits of a truth record live beside it: R.json -> R.logits.npz."""
    return record_path.with_suffix(".logits.npz")


def truth_draw(record: dict) -> dict[str, dict[str, list[list[int]]]]:
    """{seed: {point: population confusion of its full-budget model}} of a truth record (the draw no method
    replays: benchmarks/selection.py)."""
    full = str(max(record["decisions"]))
    return {seed: {key: row["confusion"][str(row["picks"][full])] for key, row in rows.items()}
            for seed, rows in record["truth"].items()}


def selection_main(args, record: dict, root: Path, space: dict, split, storage: Path) -> None:
    """benchmarks/selection.py on a draw record: our search replayed under Ray Tune per draw and seed, the
    peers through their own APIs, then the tables and the SUMMARY selection line."""
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from benchmarks import selection
    from scolio_sweep.settings.profile import define_search_space

    if "truth_draw" not in record:
        raise SystemExit("the record has no truth draw: pass --truth-draw OLD.json (a record of other seeds)")
    source = Path(args.table)
    logits_file = logits_path(source)
    logits = dict(np.load(logits_file)) if logits_file.exists() else {}
    meta = json.loads((root / "synth_meta.json").read_text())["sequences"]
    test_mix = [sum(r["side"] == "test" and r["class"] == c for r in meta.values()) for c in CLASS_NAMES]
    val_mix = [sum(meta[i]["class"] == c for i in split.val) for c in CLASS_NAMES]
    if list(record["val_ids"]) != list(split.val):
        raise SystemExit("the record's val ids are not this data set's: it was recorded on another stand-in")
    val_labels = np.asarray([CLASS_NAMES.index(meta[i]["class"]) for i in split.val])
    points = grid_points(space)
    samples = VARIANTS["pipeline"]["samples"]
    values = {point_key(p): {k: v for k, v in p.items()} for p in points}

    def replay_search(draw, seed: int, num_samples: int) -> list[TrialRecord]:
        profile = bench_profile(root, space, seed, num_samples, args.iterations, args.eval_every,
                                VARIANTS["pipeline"]["asha"], reproducible=True)
        replay = tune.with_parameters(replay_trainable, table=draw.reports[draw.search_seed],
                                      time_scale=args.time_scale)
        return run_search("pipeline", seed, profile, replay, storage, reuse_actors=True)[0]

    profile = bench_profile(root, space, 0, samples, args.iterations, args.eval_every)

    def tpe_searcher(seed: int):
        # The same TPE as ours (published defaults first, the same startup share), so that what differs is
        # how trainings are allocated.
        configs = max(1, samples)
        return OptunaSearch(space=define_search_space(profile), metric=profile.metric, mode=profile.mode,
                            points_to_evaluate=list(profile.points_to_evaluate) or None,
                            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, configs // 3))))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="scolio-peers-") as scratch:
        selection.report(record, logits, {int(s): rows for s, rows in record["truth_draw"].items()},
                         val_labels=val_labels, test_mix=test_mix, val_mix=val_mix, replay_search=replay_search,
                         tpe_searcher=tpe_searcher, space=define_search_space(profile), key_of=point_key,
                         values_of=values.__getitem__, metric=profile.metric,
                         seeds=list(range(args.seeds if args.seeds is not None else selection.SEARCH_SEEDS)),
                         scratch=Path(scratch))


def variant_rungs(variant: str, evaluations: int) -> list[int]:
    """The evaluations at which `variant`'s scheduler compares trials (none for FIFO and random)."""
    asha = VARIANTS[variant].get("asha")
    return rung_milestones(evaluations, asha["grace_period"], asha["reduction_factor"]) if asha else []


def code_fingerprint() -> str:
    """sha256 over the sources trial processes import: a curve is only a fixed function of its config while
    these stay unchanged (each trial re-imports them from the working tree)."""
    digest = hashlib.sha256()
    for path in sorted(p for d in ("scolio_core", "scolio_sweep", "sweeps") for p in (REPO / d).rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def load_trials(rows: list[dict]) -> list[TrialRecord]:
    return [TrialRecord(r["trial_id"], r["key"], r["config"], [tuple(x) for x in r["reports"]], r["status"],
                        r.get("order", 0)) for r in rows]


def rank_agreement(grid: list[TrialRecord]) -> list[tuple[int, float]]:
    """Spearman correlation, over grid points, of the score at each evaluation with the point's best score."""
    import pandas as pd

    frame = pd.DataFrame({t.key: [r[2] for r in t.reports] for t in grid}).T
    best = frame.max(axis=1)
    return [(int(col) + 1, float(frame[col].corr(best, method="spearman"))) for col in frame.columns]


def budget_agreement(short: list[TrialRecord], full: list[TrialRecord]) -> dict[str, float]:
    """How well complete runs at a compressed budget (the whole lr schedule squeezed into fewer steps) rank the
    grid's points the way full-budget runs do: what a Hyperband-style bracket would rely on. Per point its best
    val in each record; `spearman` over the common points; `best_kept` 1.0 when every point tied for the full
    budget's best is in the short budget's top third; `top3_kept` the share of the full budget's 3 best points in
    that top third; `bracket_cost` what "all points short, the top third again in full" costs, as a share of the
    full grid (the short runs included)."""
    import pandas as pd

    shorts, fulls = {t.key: t.best for t in short}, {t.key: t.best for t in full}
    common = sorted(set(shorts) & set(fulls))
    if len(common) < 3:
        raise ValueError(f"the records share {len(common)} points; need at least 3")
    frame = pd.DataFrame({"short": [shorts[k] for k in common], "full": [fulls[k] for k in common]}, index=common)
    third = max(1, -(-len(common) // 3))
    kept = set(frame["short"].sort_values(ascending=False, kind="stable").index[:third])
    best = frame["full"].max()
    top3 = list(frame["full"].sort_values(ascending=False, kind="stable").index[:3])
    short_steps = statistics.mean(t.iterations for t in short if t.key in common)
    full_steps = statistics.mean(t.iterations for t in full if t.key in common)
    return {"points": float(len(common)), "spearman": float(frame["short"].corr(frame["full"], method="spearman")),
            "best_kept": float(all(k in kept for k in frame.index[frame["full"] >= best - TIE])),
            "top3_kept": sum(k in kept for k in top3) / 3,
            "bracket_cost": (len(common) * short_steps + third * full_steps) / (len(common) * full_steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6-point space, 48 steps, 2 replay seeds")
    parser.add_argument("--seeds", type=int, default=None, help="replay seeds per method (default 10; quick 2)")
    parser.add_argument("--iterations", type=int, default=None, help="steps per full trial (default 240; quick 48)")
    parser.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (24; quick 12)")
    parser.add_argument("--time-scale", type=float, default=0.05,
                        help="replay sleeps this fraction of each evaluation's recorded time (%(default)s)")
    parser.add_argument("--random-time-scale", type=float, default=0.01,
                        help="the same for random search, whose choices do not depend on timing (%(default)s)")
    parser.add_argument("--variants", nargs="*", default=[v for v in VARIANTS if v != "tpe (fifo)"],
                        choices=list(VARIANTS), help="methods to replay (%(default)s)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="extra replays of seed 0 of asha+tpe and batched+tpe (when replayed), to show "
                             "timing sensitivity (%(default)s)")
    parser.add_argument("--table", help="replay a record saved by --save (skips phase 1 and the real checks)")
    parser.add_argument("--save", help="write the phase-1 record (curves, times, real ASHA run) to this JSON")
    parser.add_argument("--cache-dir", help="where the synthetic data set is cached (default: the sweeps' cache)")
    parser.add_argument("--truth-seeds", type=int, default=0,
                        help="phase 1 records the grid at training seeds 0..N-1 with ground truth (a true score per "
                             "model selection could test; benchmarks/ground_truth.py) instead of the real checks; "
                             "3 lets the pipeline's 2x2 confirmation replay (%(default)s)")
    parser.add_argument("--truth-seed-from", type=int, default=0,
                        help="the first training seed of --truth-seeds (%(default)s)")
    parser.add_argument("--draw-size", type=int, default=3,
                        help="training seeds per noise draw: a draw's first seed is scored at every decision "
                             "point (its search), the others at the full budget (%(default)s)")
    parser.add_argument("--truth-draw", metavar="OLD.json",
                        help="with --table: take the truth draw (full-budget population confusions of other training "
                             "seeds) from this truth record; with --save, the merged record is written there")
    parser.add_argument("--population", type=int, default=1200,
                        help="fresh sequences (a third per class) that give the ground truth (%(default)s)")
    parser.add_argument("--compare-budget", nargs=2, metavar=("SHORT.json", "FULL.json"),
                        help="compare two saved records of the same grid at different budgets (no Ray, no replay)")
    args = parser.parse_args()
    if args.compare_budget:
        short_path, full_path = args.compare_budget
        short, full = (load_trials(json.loads(Path(p).read_text())["grid"]) for p in (short_path, full_path))
        found = budget_agreement(short, full)
        print(f"short budget {statistics.mean(t.iterations for t in short):.0f} steps vs full "
              f"{statistics.mean(t.iterations for t in full):.0f}, {found['points']:.0f} common points")
        print(f"SUMMARY budget: Spearman {found['spearman']:.2f} between the short and full budget's best val per "
              f"point; full best in the short top third: {'yes' if found['best_kept'] else 'no'}; full top 3 kept "
              f"{found['top3_kept']:.2f}; a short-then-full-for-the-top-third bracket costs "
              f"{found['bracket_cost']:.2f} of the grid")
        return
    space = QUICK_SPACE if args.quick else SPACE
    args.iterations = args.iterations or (48 if args.quick else 240)
    args.eval_every = args.eval_every or (12 if args.quick else 24)
    seeds = list(range(args.seeds if args.seeds is not None else (2 if args.quick else 10)))

    from scolio_core.data.resolve import resolve_split
    from scolio_core.data.stand_in import synthetic_root

    root = synthetic_root(SynthSettings(**SYNTH), Path(args.cache_dir) if args.cache_dir else None)
    points = grid_points(space)
    base = bench_profile(root, space, 0, len(points), args.iterations, args.eval_every)
    split = resolve_split(base.base_config()).trainval()
    print(f"data: {root} ({len(split.train)} train / {len(split.val)} val sequences); grid of {len(points)} points "
          f"= trial budget per search, 2 at a time; {args.iterations} steps per full trial, evaluation every "
          f"{args.eval_every} ({base.evaluations_per_trial} evaluations); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs", flush=True)

    import ray
    from ray import tune

    from scolio_sweep.engine.tuner import connect_ray

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    # No CSV/JSON/TensorBoard result files: TrialLog keeps what is measured. (Tune then warns at the end of
    # each fit that it could not fetch metrics for the result grid; harmless here, so silenced.)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    replays: dict[str, list[tuple[int, list[TrialRecord], float]]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory(prefix="scolio-search-") as scratch:
        connect_ray(num_cpus=2, temp_dir=str(Path(scratch) / "ray"), include_dashboard=False)
        storage = Path(scratch) / "ray_results"
        if args.table:
            record = json.loads(Path(args.table).read_text())
            print(f"phase 1: replaying the record {args.table} (no real trials)")
        else:
            print("phase 1: real trials", flush=True)
            before = code_fingerprint()
            if args.truth_seeds:
                record = phase1_truth(args, root, space, split, storage,
                                      [r for v in args.variants for r in variant_rungs(v, base.evaluations_per_trial)])
            else:
                record = phase1(args, root, space, split, storage)
            record["code"] = {"before": before, "after": code_fingerprint()}
            if before != record["code"]["after"]:
                print(f"WARNING: the sources under scolio_core/, scolio_sweep/trainables/ or sweeps/ changed during phase 1 "
                      f"({before} -> {record['code']['after']}): the recorded curves mix code versions", flush=True)
            if args.save:
                Path(args.save).write_text(json.dumps(record))
        if args.truth_draw:
            record["truth_draw"] = truth_draw(json.loads(Path(args.truth_draw).read_text()))
            if args.save:
                Path(args.save).write_text(json.dumps(record))
        if "draw_size" in record:  # a record with training-noise draws: the selection benchmark
            selection_main(args, record, root, space, split, storage)
            ray.shutdown()
            return
        grid = load_trials(record["grid"])
        table = {t.key: t.reports for t in grid}
        missing = [point_key(p) for p in points if point_key(p) not in table]
        if missing or any(t.status != "finished" for t in grid):
            raise SystemExit(f"phase 1 is incomplete (missing {missing}; statuses "
                             f"{sorted({t.status for t in grid})}): cannot replay")
        print(f"phase 2: replay, {len(seeds)} seeds x {len(args.variants)} methods, time scale {args.time_scale} "
              f"(random {args.random_time_scale})", flush=True)
        for variant in args.variants:
            asha = VARIANTS[variant].get("asha")
            rungs = variant_rungs(variant, base.evaluations_per_trial)
            print(f"  {variant}: " + (f"ASHA grace {asha['grace_period']}, reduction {asha['reduction_factor']}, rungs "
                                      f"at evaluations {rungs} of {base.evaluations_per_trial} + " if asha else "FIFO + ")
                  + ("Optuna RandomSampler" if VARIANTS[variant]["kind"] == "random" else
                     "TPE (scolio_sweep.stages.run.build_search: published defaults first)"))
        check = None
        if "real_asha" in record:
            profile = bench_profile(root, space, 0, len(points), args.iterations, args.eval_every,
                                    VARIANTS[PRIMARY]["asha"], concurrency=1)
            replay = tune.with_parameters(replay_trainable, table=table, time_scale=args.time_scale)
            trials, _ = run_search(PRIMARY, 0, profile, replay, storage, reuse_actors=True)
            check = (load_trials(record["real_asha"]), trials)
        # How much timing alone moves a search at 2 trials at a time: the same seed replayed again.
        repeats: dict[str, list] = {}
        for variant in [v for v in args.variants if v == PRIMARY or VARIANTS[v].get("reproducible")]:
            if seeds:
                profile = bench_profile(root, space, 0, VARIANTS[variant].get("samples", len(points)),
                                        args.iterations, args.eval_every, VARIANTS[variant]["asha"],
                                        reproducible=VARIANTS[variant].get("reproducible", False))
                replay = tune.with_parameters(replay_trainable, table=table, time_scale=args.time_scale)
                repeats[variant] = [run_search(variant, 0, profile, replay, storage, reuse_actors=True)[0]
                                    for _ in range(args.repeats)]
        for variant in args.variants:
            # Random search ignores results, so only its completion order depends on timing: replay it faster.
            scale = args.random_time_scale if VARIANTS[variant]["kind"] == "random" else args.time_scale
            replay = tune.with_parameters(replay_trainable, table=table, time_scale=scale)
            start = time.perf_counter()
            for seed in seeds:
                profile = bench_profile(root, space, seed, VARIANTS[variant].get("samples", len(points)),
                                        args.iterations, args.eval_every, VARIANTS[variant].get("asha"),
                                        reproducible=VARIANTS[variant].get("reproducible", False))
                trials, wall = run_search(variant, seed, profile, replay, storage, reuse_actors=True)
                replays[variant].append((seed, trials, wall))
            print(f"  {variant}: {len(seeds)} seeds in {time.perf_counter() - start:.0f} s", flush=True)
        ray.shutdown()

    report(record, grid, replays, check, repeats, args, len(split.val))
    if "truth" in record:
        meta = json.loads((root / "synth_meta.json").read_text())["sequences"]
        test_mix = [sum(r["side"] == "test" and r["class"] == c for r in meta.values()) for c in CLASS_NAMES]
        val_mix = [sum(meta[i]["class"] == c for i in split.val) for c in CLASS_NAMES]
        truth_report(record, grid, replays, test_mix, val_mix)


def report(record: dict, grid: list[TrialRecord], replays: dict, check, repeats: dict, args, num_val: int) -> None:
    """Print the grid, the checks, the per-method table and the SUMMARY line."""
    full = grid[0].iterations
    target = max(t.best for t in grid)
    winners = [t.key for t in grid if t.best >= target - TIE]
    enum_cost, grid_total, _ = cost_to_target([(t.iterations, t.best) for t in grid], target)
    expected = grid_expected_trials(len(grid), len(winners)) * full
    print(f"\ngrid ({len(grid)} points, completion order): best / final val macro-F1 per point")
    for t in grid:
        print(f"  {t.key:34s} best {t.best:.4f}  final {t.reports[-1][2]:.4f}")
    ranked = sorted((t.best for t in grid), reverse=True)
    print(f"grid best {target:.4f} reached by {len(winners)} of {len(grid)} points ({'; '.join(winners)}); "
          f"next best {ranked[len(winners)] if len(ranked) > len(winners) else float('nan'):.4f}; "
          f"{num_val} val sequences")
    print("rank agreement (Spearman over grid points) of the score at evaluation e with the best score: "
          + ", ".join(f"e{e} {rho:.2f}" for e, rho in rank_agreement(grid)))
    if "determinism" in record:
        d = record["determinism"]
        code = record.get("code", {})
        print(f"determinism: {d['same']} of {d['runs']} real re-runs of grid points gave identical curves; "
              f"source fingerprint {code.get('before', '?')} -> {code.get('after', '?')}"
              + (" (CHANGED during phase 1)" if code and code["before"] != code["after"] else ""))
    if "grid_wall_s" in record:
        print(f"phase-1 grid wall time {record['grid_wall_s']:.0f} s; real {PRIMARY} seed 0 "
              f"{record.get('real_asha_wall_s', float('nan')):.0f} s")
    if check is not None:
        real, replayed = check
        same_decisions = decisions(real) == decisions(replayed)
        real_best, replay_best = max(t.best for t in real), max(t.best for t in replayed)
        real_cost = cost_to_target([(t.iterations, t.best) for t in real], target)
        replay_cost = cost_to_target([(t.iterations, t.best) for t in replayed], target)
        print(f"replay check ({PRIMARY}, seed 0, 1 trial at a time): same suggestions and stop rungs: {same_decisions}; best real "
              f"{real_best:.4f} vs replay {replay_best:.4f}; iterations to grid best real {real_cost[0]} vs "
              f"replay {replay_cost[0]}; totals {real_cost[1]} vs {replay_cost[1]}")
        if not same_decisions:
            print(f"  real:   {decisions(real)}\n  replay: {decisions(replayed)}")
    for variant, again in repeats.items():
        first = [trials for seed, trials, _ in replays.get(variant, []) if seed == 0]
        if not (first and again):
            continue
        runs = first + again
        same = [decisions_match(r, runs[0]) for r in runs[1:]]
        winners = {rank_trials(r)[0].key for r in runs}
        costs = [charged(*cost_to_target([(t.iterations, t.best) for t in r], target)[:2]) for r in runs]
        print(f"timing sensitivity ({variant}, seed 0 replayed {len(runs)} times, 2 at a time): of {len(runs) - 1} "
              f"repeats, {sum(s[1] for s in same)} made the first replay's suggestions and stop decisions "
              f"({sum(s[0] for s in same)} also in the same start order); search winner {sorted(winners)}; costs {costs}")

    print(f"\n{'method':14s} {'seeds':>5s} {'reached':>7s} {'cost mean':>9s} {'median':>7s} {'min-max':>11s} "
          f"{'spend':>6s} {'stopped':>7s} {'ratio mean':>10s} {'ratio med':>9s}")
    print(f"{'grid expected':14s} {'-':>5s} {'-':>7s} {expected:9.0f} {'-':>7s} {'-':>11s} {grid_total:6d} "
          f"{'-':>7s} {1.0:10.2f} {'-':>9s}")
    print(f"{'grid enum':14s} {'-':>5s} {'yes':>7s} {enum_cost:9d} {'-':>7s} {'-':>11s} {grid_total:6d} "
          f"{'-':>7s} {enum_cost / expected:10.2f} {'-':>9s}")
    stats: dict[str, dict[str, float]] = {}
    per_seed: dict[str, str] = {}
    for variant, runs in replays.items():
        costs, spends, hits, stopped, reached_flags = [], [], 0, [], []
        for _seed, trials, _wall in runs:
            reached, total, _ = cost_to_target([(t.iterations, t.best) for t in trials], target)
            reached_flags.append(reached is not None)
            hits += reached is not None
            costs.append(charged(reached, total))
            spends.append(total)
            stopped.append(sum(t.status == "stopped" for t in trials))
        if not runs:
            continue
        mean, median = statistics.mean(costs), statistics.median(costs)
        per_seed[variant] = " ".join(f"{c}{'' if ok else '*'}" for c, ok in zip(costs, reached_flags))
        stats[variant] = {"mean": mean, "median": median, "hits": hits, "n": len(runs)}
        print(f"{variant:14s} {len(runs):5d} {f'{hits}/{len(runs)}':>7s} {mean:9.0f} {median:7.0f} "
              f"{f'{min(costs)}-{max(costs)}':>11s} {statistics.mean(spends):6.0f} {statistics.mean(stopped):7.1f} "
              f"{mean / expected:10.2f} {median / expected:9.2f}")
    print("cost = trial-iterations in completion order until a trial reaches the grid's best (failures charged "
          "their whole spend); spend = mean total iterations; ratio = cost / grid expected cost")
    for variant, costs in per_seed.items():
        print(f"  {variant} per seed (* = never reached, charged its spend): {costs}")
    if PRIMARY in stats:
        s = stats[PRIMARY]
        ratio = s["mean"] / expected
        print(f"SUMMARY search: {PRIMARY} (ASHA grace {VARIANTS[PRIMARY]['asha']['grace_period']}, rf "
              f"{VARIANTS[PRIMARY]['asha']['reduction_factor']}, TPE) reaches the grid's best val macro-F1 "
              f"({target:.4f}, {len(winners)} of {len(grid)} points) in {s['hits']} of {s['n']} seeds; mean cost "
              f"{s['mean']:.0f} / median {s['median']:.0f} trial-iterations vs grid expected {expected:.0f}: ratio "
              f"{ratio:.2f} (median {s['median'] / expected:.2f}; goal <= 0.33: {'met' if ratio <= 1 / 3 else 'missed'})"
              + "".join(f"; {v} {stats[v]['mean'] / expected:.2f} ({stats[v]['hits']}/{stats[v]['n']})"
                        for v in stats if v != PRIMARY))
    determinism = record.get("determinism")
    if determinism and determinism["same"] != determinism["runs"]:
        # The replay assumes a config's curve is a fixed function of the config: without it, nothing above holds.
        raise SystemExit("determinism check FAILED: re-runs of grid points gave different curves; the replay is invalid")


def truth_report(record: dict, grid: list[TrialRecord], replays: dict, test_mix: list[int], val_mix: list[int]
                 ) -> None:
    """What each method would send to the test look, scored against the record's ground truth
    (benchmarks/ground_truth.py) at the test split's class mix (what the look estimates) and at val's (what
    selection optimises): regret, how often within 0.01 of the best point, compute and optimism."""
    import pandas as pd

    from benchmarks.ground_truth import WITHIN, Truth, outcome, summarise, tested_by

    full_steps = grid[0].iterations
    grid_steps = len(grid) * full_steps
    at_test, at_val = Truth(record, test_mix, val_mix), Truth(record, val_mix, val_mix)
    points = sorted({t.key for t in grid}, key=lambda k: -at_test.point_score(k))
    vals = {k: statistics.mean(at_test.best_val(s, k) for s in at_test.seeds) for k in points}
    print(f"\nground truth: {record['population']['sequences']} fresh sequences ({record['population']['root']}, "
          f"never used for a choice), reweighted to the test split's class mix {'/'.join(map(str, test_mix))} "
          f"(negative/neutral/positive) and to val's {'/'.join(map(str, val_mix))}; a point's true score is the "
          f"mean over training seeds {at_test.seeds} of its full-budget model's")
    print(f"  {'point':34s} {'true (test mix)':>15s} {'true (val mix)':>14s} {'val, seed mean':>14s}")
    for k in points[:6]:
        print(f"  {k:34s} {at_test.point_score(k):15.4f} {at_val.point_score(k):14.4f} {vals[k]:14.4f}")
    frame = pd.DataFrame({"test": [at_test.point_score(k) for k in points],
                          "val_mix": [at_val.point_score(k) for k in points], "val": [vals[k] for k in points]})
    spread = frame["test"].iloc[0] - frame["test"]

    def rho(a: str, b: str) -> float:
        return float(frame[a].corr(frame[b], method="spearman"))

    print(f"  ... {len(points)} points, {int((spread <= WITHIN + 1e-12).sum())} within {WITHIN} of the best at the "
          f"test mix; Spearman over points: seed-mean val vs true (val mix) {rho('val', 'val_mix'):.2f}, "
          f"vs true (test mix) {rho('val', 'test'):.2f}; true val mix vs test mix {rho('val_mix', 'test'):.2f}")
    if len(at_test.seeds) > 1:  # what bounds any selection on this val set: its noise against the points' spread
        val_sd = statistics.mean(statistics.stdev(at_test.best_val(s, k) for s in at_test.seeds) for k in points)
        full = len(at_test.curves[0][points[0]])
        true_sd = statistics.mean(statistics.stdev(at_test.score(s, k, full) for s in at_test.seeds) for k in points)
        print(f"  noise: a point's best val varies by SD {val_sd:.4f} across training seeds (mean over points), its "
              f"true score (test mix) by SD {true_sd:.4f}; the {min(5, len(points))} best points' true scores "
              f"span {frame['test'].iloc[0] - frame['test'].iloc[min(5, len(points)) - 1]:.4f}")
        for label, truth in (("test", at_test), ("val", at_val)):
            top = max(points, key=truth.point_score)
            own = sum(truth.score(s, top, full) >= truth.point_score(top) - WITHIN for s in truth.seeds)
            print(f"  ceiling ({label} mix): the best point's own models are within {WITHIN} of its mean in {own} of "
                  f"{len(truth.seeds)} seeds; a rule that tests one model of the right point does no better")

    searches: dict[str, tuple[list, tuple[int, int] | None]] = {}
    replayed = [(v, [trials for _seed, trials, _wall in runs], VARIANTS[v].get("confirm"))
                for v, runs in replays.items()]
    for name, runs, confirm in [("grid", [grid], None), *replayed]:
        searches[name] = (runs, confirm)
        if confirm is None:  # the confirmation replays from the search's trials alone: what it adds to each search
            searches[f"{name} + confirm 2x2"] = (runs, (2, 2))
    summaries: dict[str, dict[str, dict]] = {}
    for label, truth in (("test", at_test), ("val", at_val)):
        best_true = max(truth.point_score(k) for k in points)
        print(f"\nat the {label} split's class mix (best point {best_true:.4f}):")
        print(f"{'method':20s} {'seeds':>5s} {'within':>6s} {'regret med':>10s} {'mean':>7s} {'max':>7s} "
              f"{'config within':>13s} {'config regret med':>17s} {'compute':>7s} {'optimism':>8s}  tested most often")
        for name, (runs, confirm) in searches.items():
            try:
                outcomes = [outcome(tested_by(trials, truth, confirm, full_steps), truth, best_true, grid_steps)
                            for trials in runs]
            except (KeyError, ValueError) as exc:  # stopping points or confirmation seeds the record lacks
                print(f"{name:20s} not scored ({exc})")
                continue
            if not outcomes:
                continue
            s = summaries.setdefault(label, {})[name] = summarise(outcomes)
            tested = statistics.mode(o.tested.key for o in outcomes)
            within, config_within = f"{s['within']}/{s['n']}", f"{s['config_within']}/{s['n']}"
            print(f"{name:20s} {s['n']:5d} {within:>6s} {s['median_regret']:10.4f} {s['mean_regret']:7.4f} "
                  f"{s['max_regret']:7.4f} {config_within:>13s} {s['median_config_regret']:17.4f} "
                  f"{s['compute']:7.2f} {s['optimism']:+8.4f}  {tested}")
    print(f"regret = the best point's true score - the tested model's (negative: a lucky seed); within = regret <= "
          f"{WITHIN}; config regret = the same for the tested point's mean over seeds (no seed luck); compute = "
          "optimiser steps (search + confirmation) / the grid's; optimism = reported val - the true score at val's "
          "mix of the same models (median)")
    if "pipeline" in summaries.get("test", {}):
        s, v = summaries["test"]["pipeline"], summaries["val"]["pipeline"]
        print(f"SUMMARY selection: within {WITHIN} of the best true macro-F1 in {s['within']}/{s['n']} seeds, median "
              f"regret {s['median_regret']:.4f}, compute {s['compute']:.2f} of grid, optimism {s['optimism']:+.4f} "
              f"(test split's class mix; at val's: {v['within']}/{v['n']}, median regret {v['median_regret']:.4f})")


if __name__ == "__main__":
    main()
