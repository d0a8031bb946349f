"""The main job: a Ray Tune + Optuna (TPE) + ASHA sweep over skeleton-map representation, sigma, joint
weight and loss (and silhouettes, as a conditional branch), then the one-shot test of the winner.

    python sweeps/representation.py                       # demo profile, synthetic data, local Ray, sqlite MLflow
    python sweeps/representation.py --profile smoke --name my-smoke
    ray job submit --working-dir . -- python sweeps/representation.py --tracking-uri http://HEAD:5000 ...

Re-running the same --name continues an interrupted sweep (Tune restore, same MLflow runs). Trials get
train/val ids only; the driver selects the winner on val, then opens the test lockbox exactly once.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# `python sweeps/representation.py` from a checkout (or a `ray job submit` working dir) without install.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.common import (  # noqa: E402
    SweepContext,
    add_sweep_arguments,
    build_search,
    finish_sweep,
    prepare_sweep,
    print_summary,
    run_sweep_cli,
)
from sweeps.profiles import apply_overrides, load_profile  # noqa: E402


@dataclass
class SweepOutcome:
    name: str
    parent_run_id: str
    winner_trial: str
    winner_val: dict
    test_metrics: dict
    reopened: bool
    results_dir: Path
    oracle_macro_f1: float | None
    wall_seconds: float


def run_representation_sweep(args: argparse.Namespace) -> SweepOutcome:
    from trainables.baseline import train_baseline

    started = time.time()
    profile = apply_overrides(load_profile(args.profile), num_samples=args.num_samples,
                              gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
                              max_concurrent_trials=args.max_concurrent_trials)
    context: SweepContext = prepare_sweep(profile, args, kind="representation")
    search_alg, scheduler = build_search(profile)
    results = context.fit(train_baseline, search_alg=search_alg, scheduler=scheduler)
    outcome = finish_sweep(context, results, reopen_test=args.reopen_test)
    print_summary(context, outcome)
    return SweepOutcome(name=context.name, parent_run_id=context.parent_run_id, winner_trial=outcome["trial_id"],
                        winner_val=outcome["val"], test_metrics=outcome["test"], reopened=outcome["reopened"],
                        results_dir=context.results_dir, oracle_macro_f1=context.oracle_macro_f1,
                        wall_seconds=time.time() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_arguments(parser, default_profile="demo")
    return run_sweep_cli(run_representation_sweep, parser.parse_args(argv), "representation sweep")


if __name__ == "__main__":
    sys.exit(main())
