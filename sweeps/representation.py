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
from pathlib import Path

# `python sweeps/representation.py` from a checkout (or a `ray job submit` working dir) without install.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.cli import add_sweep_arguments, profile_from_args, run_sweep_cli, settings_from_args  # noqa: E402
from sweeps.finish import SweepOutcome, finish_sweep, print_summary  # noqa: E402
from sweeps.prepare import prepare_sweep  # noqa: E402
from sweeps.run import build_search, run_trials  # noqa: E402


def run_representation_sweep(args: argparse.Namespace) -> SweepOutcome:
    profile = profile_from_args(args)  # a bad profile is refused before Ray is even imported
    context = prepare_sweep(profile, settings_from_args(args), kind="representation")
    from trainables.baseline import train_baseline

    search_alg, scheduler = build_search(context.profile)
    results = run_trials(context, train_baseline, search_alg=search_alg, scheduler=scheduler)
    outcome = finish_sweep(context, results, reopen_test=args.reopen_test)
    print_summary(context, outcome)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_arguments(parser, default_profile="demo")
    return run_sweep_cli(run_representation_sweep, parser.parse_args(argv), "representation sweep")


if __name__ == "__main__":
    sys.exit(main())
