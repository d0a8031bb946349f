"""AdamW + cosine finetune sweep (lr, weight decay, warm-up, iterations), warm-started from the winner of a
representation sweep: the second stage of that sweep's study (`scolio_sweep.studies.finetune`).

    python sweeps/representation.py --defer-test && python sweeps/finetune.py --from-sweep demo
    python sweeps/representation.py --finetune-profile finetune_demo          # the same study in one command
    python sweeps/finetune.py --from-sweep <parent run id> --profile finetune_smoke --name ft-smoke
"""

from __future__ import annotations

import argparse
import sys

from scolio_sweep.cli import add_sweep_arguments, profile_from_args, run_sweep_cli, settings_from_args


def run_finetune_sweep(args: argparse.Namespace) -> None:
    profile = profile_from_args(args)  # a bad profile is refused before MLflow or Ray is even imported
    settings = settings_from_args(args)
    from scolio_sweep.studies.finetune import print_study, run_finetune_stage  # torch: once the flags hold

    outcome, baseline_val = run_finetune_stage(profile, settings, args.from_sweep, args.reopen_test)
    print_study(outcome, baseline_val)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_arguments(parser, default_profile="finetune_demo")
    parser.add_argument("--from-sweep", required=True, help="representation sweep name or its parent run id")
    return run_sweep_cli(run_finetune_sweep, parser.parse_args(argv), "finetune sweep")


if __name__ == "__main__":
    sys.exit(main())
