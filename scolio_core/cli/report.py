"""Rebuild results/<sweep>/ (CSV, Markdown, plots) from MLflow alone.

    scolio report repr-sweep [--tracking-uri sqlite:///mlflow.db] --out results/repr-sweep \
        [--data-root /data/scoliosis1k]   # adds skeleton_previews.png

The store: --tracking-uri, else $MLFLOW_TRACKING_URI, else mlflow.db in the checkout root.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from scolio_core.names import DEFAULT_EXPERIMENT, TAG_SWEEP
    from scolio_core.tracking.store import TRACKING_URI_HELP

    parser.add_argument("sweep", metavar="SWEEP", help=f"sweep name (the parent run's {TAG_SWEEP} tag)")
    parser.add_argument("--tracking-uri", default=None, help=TRACKING_URI_HELP)
    parser.add_argument("--out", help="output folder (default results/SWEEP)")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name (default %(default)s)")
    parser.add_argument("--data-root", help="data root with pose pkl files: adds skeleton_previews.png")


def run(args: argparse.Namespace) -> int:
    from scolio_core.tracking.report import build_report, markdown_table
    from scolio_core.tracking.store import resolve_tracking_uri

    out = args.out or f"results/{args.sweep}"
    paths = build_report(resolve_tracking_uri(args.tracking_uri), args.sweep, out, experiment=args.experiment,
                         data_root=args.data_root)
    for path in paths.files():
        print(f"wrote {path}")
    for note in paths.notes:
        print(f"note: {note}")
    print()
    print(markdown_table(paths.leaderboard), end="")
    return 0
