"""Evaluate a checkpoint on the val or test split (test goes through the lockbox).

    scolio eval --checkpoint runs/cpu/checkpoints/iter_0000300 --data-root /tmp/synth \
        --partition /tmp/synth/Scoliosis1K_118.json --split val --json

Any evaluation on ids that are not the checkpoint's own val ids — the test split, or a "val" split carved
from another partition, or any split for an imported checkpoint that records none — is a test look: it
goes through the lockbox and its ledger (the tracking store's, shared with the sweeps; `--ledger FILE` for
work without MLflow), whatever `--override-contract` says.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scolio_core import CLASS_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory")
    parser.add_argument("--data-root", required=True, metavar="DIR",
                        help="directory holding the pose and silhouette roots")
    parser.add_argument("--partition", required=True, metavar="FILE.json",
                        help="partition JSON (TRAIN_SET / TEST_SET)")
    parser.add_argument("--split", choices=("val", "test"), required=True,
                        help="val: the carve from TRAIN_SET; test: TEST_SET, once, through the lockbox")
    parser.add_argument("--json", action="store_true", help="print metrics as JSON")
    parser.add_argument("--override-contract", action="store_true",
                        help="evaluate even if the data breaks the checkpoint's contract (recorded in the output)")
    parser.add_argument("--reopen", action="store_true",
                        help="test only: evaluate again although the lockbox was opened (labelled REOPENED)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store whose test-set ledger records the look (default $MLFLOW_TRACKING_URI, "
                             "else mlflow.db in the checkout root: the store your sweeps use)")
    parser.add_argument("--ledger", metavar="FILE",
                        help="record looks in this JSON-lines file instead of MLflow (work without MLflow)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto uses CUDA when present (default auto)")


def format_metrics(metrics: dict) -> str:
    lines = [f"{k:<40} {v:.4f}" for k, v in sorted(metrics.items()) if isinstance(v, (int, float))]
    return "\n".join(lines)


def format_confusion(matrix: list[list[int]]) -> str:
    width = max(len(n) for n in CLASS_NAMES) + 2
    head = "true \\ pred".ljust(width + 2) + "".join(n.rjust(width) for n in CLASS_NAMES)
    rows = [f"{CLASS_NAMES[i]:<{width + 2}}" + "".join(str(v).rjust(width) for v in row)
            for i, row in enumerate(matrix)]
    return "\n".join([head, *rows])


def own_val_ids(checkpoint) -> frozenset[str]:
    """The ids a checkpoint may be evaluated on without a test look: its own val carve (none if imported)."""
    return frozenset(checkpoint.split.val) if checkpoint.split is not None else frozenset()


def pick_ledger(args: argparse.Namespace):
    """`--ledger FILE`, else the test-set ledger of the tracking store the sweeps use (`--tracking-uri`, else
    $MLFLOW_TRACKING_URI, else the checkout's mlflow.db: tracking/store.py). Only a flag picks a file ledger."""
    if args.ledger:
        from scolio_core.evaluation.lockbox import FileLedger

        return FileLedger(args.ledger)
    from scolio_core.tracking.ledger import MlflowLedger
    from scolio_core.tracking.store import resolve_tracking_uri

    return MlflowLedger(resolve_tracking_uri(args.tracking_uri))


def run(args: argparse.Namespace) -> int:
    from scolio_core import names
    from scolio_core.data.resolve import resolve_split
    from scolio_core.training.checkpoint import read_checkpoint
    from scolio_core.training.metrics import flatten_metrics

    checkpoint = read_checkpoint(args.checkpoint)
    config = checkpoint.config.replace(**{
        "data.root": str(Path(args.data_root).resolve()), "data.partition": str(Path(args.partition).resolve()),
        "train.device": args.device})
    split = resolve_split(config)
    ids = split.test if args.split == "test" else split.val
    if args.split == "test" or not set(ids) <= own_val_ids(checkpoint):
        from scolio_core.evaluation.lockbox import evaluate_test_once

        result = evaluate_test_once(checkpoint, config, split, pick_ledger(args), entry_point="scolio eval",
                                    reopen=args.reopen, override_contract=args.override_contract, ids=ids,
                                    split_name=args.split)
        metrics, overrides, matrix = result.metrics, result.contract_overrides, result.confusion_matrix
        what = "TEST" if args.split == "test" else "VAL IDS OUTSIDE THE CHECKPOINT'S OWN VAL: a test look"
        label = f"{what} (one-shot, look {result.look} of this set)" if not result.reopened else \
            f"{what} — REOPENED (look {result.look}; not a clean one-shot estimate)"
    else:
        from scolio_core.evaluation.contract import check_contract
        from scolio_core.evaluation.predict import predict_checkpoint

        overrides = check_contract(checkpoint, config, ids, "val", trainval=split.trainval(),
                                   override=args.override_contract)
        point = predict_checkpoint(checkpoint, config, ids).metrics()
        metrics, matrix = flatten_metrics(point, names.SPLIT_VAL), point["confusion_matrix"]
        label = "VAL"
    if args.json:
        print(json.dumps({"split": args.split, "label": label, "checkpoint": str(checkpoint.directory),
                          "metrics": metrics, "confusion_matrix": matrix,
                          "contract_overrides": overrides}, indent=2, sort_keys=True))
        return 0
    print(f"{label}  checkpoint {checkpoint.directory}  ({split.partition}, split {split.fingerprint[:12]})")
    if overrides:
        print("CONTRACT OVERRIDDEN: " + "; ".join(overrides))
    print(format_metrics(metrics))
    print(format_confusion(matrix))
    return 0
