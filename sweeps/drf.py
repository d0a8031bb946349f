"""DRF vs its `use_pga: false` control (ScoNet-MT-ske) under identical budgets and seeds, reporting the
paired val difference with its uncertainty; the winner then gets the sweep's one-shot test.

    python sweeps/drf.py --profile drf_smoke
    python sweeps/drf.py                             # drf_demo profile

The study itself is `scolio_sweep.studies.drf`.
"""

from __future__ import annotations

import argparse
import sys

from scolio_sweep.cli import add_sweep_arguments, profile_from_args, run_sweep_cli, settings_from_args


def run_drf_sweep(args: argparse.Namespace) -> dict:
    profile, settings = profile_from_args(args), settings_from_args(args)  # checked before Ray or torch load
    from scolio_sweep.studies.drf import run_drf_comparison

    return run_drf_comparison(profile, settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_arguments(parser, default_profile="drf_demo")
    return run_sweep_cli(run_drf_sweep, parser.parse_args(argv), "drf comparison")


if __name__ == "__main__":
    sys.exit(main())
