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
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# `python sweeps/representation.py` from a checkout (or a `ray job submit` working dir) without install.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scolio_core.config import ExperimentConfig  # noqa: E402
from scolio_core.errors import ConfigError, ScolioError  # noqa: E402
from sweeps.common import (  # noqa: E402
    SweepContext, build_search, finish_sweep, prepare_sweep, print_summary)
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


def add_sweep_arguments(parser: argparse.ArgumentParser, default_profile: str) -> None:
    parser.add_argument("--profile", default=default_profile, help="smoke | demo | paper | path/to/profile.yaml")
    parser.add_argument("--name", help="sweep name (default: the profile name); re-using a name resumes it")
    parser.add_argument("--data-root", help="Scoliosis1K root holding the pose/silhouette roots "
                                            "(default: synthesise the stand-in into a cache)")
    parser.add_argument("--partition", help="partition JSON (absolute, or relative to the data root)")
    parser.add_argument("--num-samples", type=int, help="number of trials")
    parser.add_argument("--max-concurrent-trials", type=int)
    parser.add_argument("--gpus-per-trial", type=float)
    parser.add_argument("--cpus-per-trial", type=float)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db here)")
    parser.add_argument("--experiment", default="scoliotune", help="MLflow experiment name")
    parser.add_argument("--storage-path", help="Tune storage for trial results and checkpoints "
                                               "(default: ./ray_results; shared storage on multi-node clusters)")
    parser.add_argument("--results-dir", default="results", help="where results/<name>/ is written")
    parser.add_argument("--cache-dir", help="where the synthetic data set is cached")
    parser.add_argument("--reopen-test", action="store_true",
                        help="evaluate test again although this sweep's lockbox was opened (labelled REOPENED)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a fixed config field of the profile, e.g. --set train.iterations=40")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_arguments(parser, default_profile="demo")
    args = parser.parse_args(argv)
    try:
        run_representation_sweep(args)
    except (ScolioError, ConfigError) as exc:
        if args.debug:
            raise
        print(f"representation sweep: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
