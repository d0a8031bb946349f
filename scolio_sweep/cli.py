"""The command line every sweep script shares: its flags, the typed settings they become, and the one-line
error handling (exit 2, traceback only with --debug)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from scolio_core.config import parse_assignments
from scolio_core.errors import ScolioError, one_line
from scolio_core.names import DEFAULT_EXPERIMENT
from scolio_core.tracking.store import resolve_tracking_uri
from scolio_sweep.settings.profile import SweepProfile, apply_overrides, load_profile
from scolio_sweep.settings.run_settings import (
    MAX_DERIVED_NAME_LENGTH,
    SweepSettings,
    check_name,
    check_output_dirs,
)


def add_sweep_arguments(parser: argparse.ArgumentParser, default_profile: str) -> None:
    parser.add_argument("--profile", default=default_profile, help="smoke | demo | paper | path/to/profile.yaml")
    parser.add_argument("--name", help="sweep name (default: the profile name); re-using a name resumes it")
    parser.add_argument("--data-root", help="Scoliosis1K root holding the pose/silhouette roots "
                                            "(default: synthesise the stand-in into a cache)")
    parser.add_argument("--partition", help="partition JSON (absolute, or relative to the data root)")
    parser.add_argument("--num-samples", type=int, help="number of trials")
    parser.add_argument("--confirm-candidates", type=int, metavar="K",
                        help="re-train the top K configurations by val with new seeds before selection "
                             "(default: the profile's confirm.candidates; 0: select the search's best trial)")
    parser.add_argument("--confirm-seeds", type=int, metavar="R", help="new training seeds per candidate")
    add_run_arguments(parser)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a run's trials go and what it records: the flags every sweep script shares (sweeps/table.py too)."""
    parser.add_argument("--max-concurrent-trials", type=int)
    parser.add_argument("--gpus-per-trial", type=float)
    parser.add_argument("--cpus-per-trial", type=float)
    # MLflow's own convention: its standard variable is the default, a flag overrides it.
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                                               "mlflow.db in the checkout: scolio_core.tracking.store)")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name")
    parser.add_argument("--storage-path", help="Tune storage for trial results and checkpoints "
                                               "(default: ./ray_results; shared storage on multi-node clusters)")
    parser.add_argument("--results-dir", default="results", help="where results/<name>/ is written")
    parser.add_argument("--cache-dir", help="where the synthetic data set is cached")
    parser.add_argument("--reopen-test", action="store_true",
                        help="evaluate test again although this sweep's lockbox was opened (labelled REOPENED)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a fixed config field of the profile, e.g. --set train.iterations=40")
    parser.add_argument("--no-shared-data", action="store_true",
                        help="every trial loads train/val itself instead of mapping the copy the driver put "
                             "into Ray's object store once per node (results are identical either way)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def settings_from_args(args: argparse.Namespace) -> SweepSettings:
    """The run's settings; the names and output folders every script takes are checked here, before compute."""
    if args.name is not None:
        check_name(args.name, "--name")
    if getattr(args, "from_sweep", None) is not None:  # finetune and table: a sweep name or a run id
        check_name(args.from_sweep, "--from-sweep", max_length=MAX_DERIVED_NAME_LENGTH)  # e.g. NAME-finetune
    settings = SweepSettings(name=args.name, data_root=args.data_root, partition=getattr(args, "partition", None),
                             tracking_uri=resolve_tracking_uri(args.tracking_uri),
                             experiment=args.experiment or DEFAULT_EXPERIMENT, storage_path=args.storage_path,
                             results_dir=args.results_dir, cache_dir=args.cache_dir, reopen_test=args.reopen_test,
                             shared_data=not args.no_shared_data)
    check_output_dirs(settings.storage_root(), settings.results_dir)
    return settings


def profile_from_args(args: argparse.Namespace) -> SweepProfile:
    """The profile named by --profile with the budget, resource and --set flags applied (all checked)."""
    return apply_overrides(load_profile(args.profile), num_samples=getattr(args, "num_samples", None),
                           max_concurrent_trials=args.max_concurrent_trials, gpus_per_trial=args.gpus_per_trial,
                           cpus_per_trial=args.cpus_per_trial, fixed=parse_assignments(args.set),
                           confirm_candidates=getattr(args, "confirm_candidates", None),
                           confirm_seeds=getattr(args, "confirm_seeds", None))


def run_sweep_cli(run: Callable[[argparse.Namespace], Any], args: argparse.Namespace, label: str) -> int:
    """Run a sweep; user errors are one line (exit 2), tracebacks only with --debug."""
    try:
        run(args)
    except ScolioError as exc:
        if args.debug:
            raise
        print(f"{label}: error: {one_line(str(exc))}", file=sys.stderr)  # control characters escaped
        return 2
    return 0
