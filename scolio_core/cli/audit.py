"""State how a sweep selected its winner and how often test was evaluated.

    scolio audit repr-sweep --tracking-uri sqlite:///mlflow.db [--json]

Reads only the MLflow record. Exit code 0 when the audit is clean, 3 when it finds a problem (test
evaluated more than once, selection not on val or not the best val trial, contract mismatch).
"""

from __future__ import annotations

import argparse
import json

EXIT_PROBLEM = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from scolio_core.tracking.report import DEFAULT_TRACKING_URI
    from scolio_core.tracking.schema import DEFAULT_EXPERIMENT, TAG_SWEEP

    parser.add_argument("sweep", metavar="SWEEP", help=f"sweep name (the parent run's {TAG_SWEEP} tag)")
    parser.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI,
                        help=f"MLflow tracking URI (default {DEFAULT_TRACKING_URI})")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the audit as JSON")


def run(args: argparse.Namespace) -> int:
    from scolio_core.tracking.report import audit_sweep

    audit = audit_sweep(args.tracking_uri, args.sweep, args.experiment)
    if args.json:
        print(json.dumps(audit, indent=2, sort_keys=True, default=str))
    else:
        print(audit["verdict"])
    return 0 if audit["clean"] else EXIT_PROBLEM
