"""State how a sweep selected its winner and how often test was evaluated.

    scolio audit repr-sweep [--tracking-uri sqlite:///mlflow.db] [--json]

Reads only the MLflow record (the store: --tracking-uri, else $MLFLOW_TRACKING_URI, else mlflow.db in the
checkout root). Exit code 0 when the audit is clean, 3 when it finds a problem (test
evaluated more than once, selection not on val or not the best val trial, contract mismatch).
"""

from __future__ import annotations

import argparse
import json

EXIT_PROBLEM = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from scolio_core.names import DEFAULT_EXPERIMENT, TAG_SWEEP
    from scolio_core.tracking.store import TRACKING_URI_HELP

    parser.add_argument("sweep", metavar="SWEEP", help=f"sweep name (the parent run's {TAG_SWEEP} tag)")
    parser.add_argument("--tracking-uri", default=None, help=TRACKING_URI_HELP)
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the audit as JSON")


def run(args: argparse.Namespace) -> int:
    from scolio_core.tracking.audit import audit_sweep
    from scolio_core.tracking.store import resolve_tracking_uri

    audit = audit_sweep(resolve_tracking_uri(args.tracking_uri), args.sweep, args.experiment)
    if args.json:
        print(json.dumps(audit, indent=2, sort_keys=True, default=str))
    else:
        print(audit["verdict"])
    return 0 if audit["clean"] else EXIT_PROBLEM
