"""Evaluate a checkpoint on the val or test split (test goes through the lockbox).

    scolio eval --checkpoint runs/cpu/checkpoints/iter_0000300 --data-root /tmp/synth \
        --partition /tmp/synth/Scoliosis1K_118.json --split val --json

`--checkpoint` takes a checkpoint directory or a seed ensemble directory (scolio_core/training/ensemble.py):
an ensemble is one model, evaluated and looked at as one.

Any evaluation on ids that are not the checkpoint's own val ids — the test split, or a "val" split carved
from another partition, or any split for an imported checkpoint that records none — is a test look: it
goes through the lockbox and its ledger, whatever `--override-contract` says. So is an evaluation on the
checkpoint's own val ids when some of them are test ids that a look in the ledger scored.

Which ledger (scolio_core.tracking.ledger.choose_ledger): a checkpoint made by a study records that study's
ledger and is evaluated there — `--tracking-uri` or `--ledger` naming another one is refused unless
`--ledger-override` (the look is then recorded in both), and no environment variable changes it. Otherwise:
`--ledger FILE` (work without MLflow), `--tracking-uri`, $MLFLOW_TRACKING_URI, or the default store, named in
every refusal.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scolio_core import CLASS_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="checkpoint directory, or a seed ensemble directory")
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
    parser.add_argument("--ledger-override", action="store_true",
                        help="for a checkpoint that records its study's ledger: also record the look in the ledger "
                             "--tracking-uri/--ledger names (it is recorded in the study's ledger as well)")
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


def pick_ledger(args: argparse.Namespace, checkpoint=None):
    """The ledger this evaluation records its look in (scolio_core.tracking.ledger.choose_ledger)."""
    from scolio_core.tracking.ledger import choose_ledger

    return choose_ledger(checkpoint=checkpoint, tracking_uri=args.tracking_uri, ledger_file=args.ledger,
                         override=getattr(args, "ledger_override", False))


def scores_test_ids(choice, ids, data_root: str) -> bool:
    """Whether a look in the chosen ledger scored any of `ids` (never creates a store that is not there)."""
    from scolio_core import names
    from scolio_core.evaluation.looks import dataset_identity, kind_of, touched
    from scolio_core.tracking.ledger import existing_store

    if not existing_store(choice.location):
        return False
    wanted, dataset = frozenset(ids), dataset_identity(data_root)
    return any(touched(look, wanted, dataset=dataset) for look in choice.ledger.all_looks()
               if kind_of(look) == names.LOOK_KIND_TEST)


def run(args: argparse.Namespace) -> int:
    from scolio_core import names
    from scolio_core.data.resolve import resolve_split
    from scolio_core.training.ensemble import read_model
    from scolio_core.training.metrics import flatten_metrics

    checkpoint = read_model(args.checkpoint)
    config = checkpoint.config.replace(**{
        "data.root": str(Path(args.data_root).resolve()), "data.partition": str(Path(args.partition).resolve()),
        "train.device": args.device})
    split = resolve_split(config)
    ids = split.test if args.split == "test" else split.val
    choice = pick_ledger(args, checkpoint)
    own_val = set(ids) <= own_val_ids(checkpoint)
    if args.split == "test" or not own_val or scores_test_ids(choice, ids, config.data.root):
        from scolio_core.errors import LockboxError
        from scolio_core.evaluation.lockbox import evaluate_test_once

        try:
            result = evaluate_test_once(checkpoint, config, split, choice.ledger, entry_point="scolio eval",
                                        reopen=args.reopen, override_contract=args.override_contract, ids=ids,
                                        split_name=args.split)
        except LockboxError as exc:
            raise LockboxError(f"{exc} [{choice.describe()}]") from None
        metrics, overrides, matrix = result.metrics, result.contract_overrides, result.confusion_matrix
        what = ("TEST" if args.split == "test" else
                "VAL IDS OUTSIDE THE CHECKPOINT'S OWN VAL: a test look" if not own_val else
                "VAL IDS THAT ARE TEST IDS OF A LOOK IN THE LEDGER: a test look")
        label = f"{what} (one-shot, look {result.look} in {choice.location})" if not result.reopened else \
            f"{what} — REOPENED (look {result.look} in {choice.location}; not a clean one-shot estimate)"
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
