"""One fixed recipe on every official partition and several seeds: the table Scoliosis1K papers report.

    python sweeps/table.py --recipe table_smoke --seeds 2            # minutes, synthetic stand-in
    python sweeps/table.py --recipe table_demo                       # results/table_demo/ (committed)
    python sweeps/table.py --from-sweep demo --seeds 5                # the configuration the demo sweep selected
    ray job submit --working-dir . -- python sweeps/table.py --recipe path/to/recipe.yaml \
        --data-root /data/Scoliosis1K --partition-dir ../shared/scoliosis1k_partitions --tracking-uri http://HEAD:5000

For each partition the recipe is trained once per seed on Ray (a grid over `train.seed` without early
stopping: every seed gets the whole budget); each seed's checkpoint is its best on val (carved from
TRAIN_SET); then the partition's test set is opened ONCE through the lockbox for all its seeds' models
together, so nothing is chosen by test. The table gives accuracy, macro precision/recall/F1, positive-class
sensitivity, negative-class specificity and the refer view as the mean over seeds with a 95 % t-interval,
beside the per-class counts behind them. Re-running the same --name resumes: finished trials are restored
and a partition whose look is recorded reuses it.

Without --data-root the profile's synthetic stand-in is built (or taken from the cache) and given the four
partition files the release has: the same sequences, carved at each training ratio.

The study itself is `scolio_sweep.studies.table`.
"""

from __future__ import annotations

import argparse
import sys

from scolio_core.config import parse_assignments
from scolio_sweep.cli import add_run_arguments, run_sweep_cli, settings_from_args
from scolio_sweep.settings.partitions import OFFICIAL_PARTITIONS, parse_partitions, parse_seeds
from scolio_sweep.settings.profile import apply_overrides


def build_table_from_args(args: argparse.Namespace) -> None:
    partitions = parse_partitions(args.partitions)
    seeds = parse_seeds(args.seeds)
    from scolio_sweep.studies.table import run_table, table_recipe  # torch and sklearn: once the flags hold

    settings = settings_from_args(args)
    profile, study_root = table_recipe(args.recipe, args.from_sweep, settings)
    profile = apply_overrides(profile, max_concurrent_trials=args.max_concurrent_trials,
                              gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
                              fixed=parse_assignments(args.set))
    label = f"the configuration sweep {args.from_sweep} selected" if args.from_sweep else args.recipe
    run_table(profile, settings, partitions, seeds, name=args.name, data_root=args.data_root or study_root,
              partition_dir=args.partition_dir, label=label)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    recipe = parser.add_mutually_exclusive_group()
    recipe.add_argument("--recipe", default="table_demo",
                        help="a profile without a search: table_smoke, table_demo or path/to/recipe.yaml "
                             "(default table_demo)")
    recipe.add_argument("--from-sweep", metavar="SWEEP",
                        help="retrain the configuration this finished sweep selected on val (its profile "
                             "gives the budget, resources and stand-in)")
    parser.add_argument("--partitions", default=",".join(OFFICIAL_PARTITIONS),
                        help="comma-separated partitions, e.g. 112,114,118,1116 (Scoliosis1K_<p>.json)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per partition (0..N-1)")
    parser.add_argument("--name", help="table name (default: the recipe's name); re-using a name resumes it")
    parser.add_argument("--data-root", help="Scoliosis1K root (default: the study's data, or the profile's "
                                            "synthetic stand-in with four partition files)")
    parser.add_argument("--partition-dir", help="folder holding Scoliosis1K_<p>.json (default: the data root)")
    add_run_arguments(parser)
    return run_sweep_cli(build_table_from_args, parser.parse_args(argv), "partition table")


if __name__ == "__main__":
    sys.exit(main())
