"""The one-shot test lockbox: the only code in scoliotune that reads test data.

A test evaluation is recorded in a ledger *before* it runs ("opened") and again when it finishes
("completed"), so a crash during the test cannot let a second look through silently: any earlier entry
for the same scope refuses a new evaluation unless `reopen=True`, and a reopened result is labelled as such
in its metrics, tags and ledger entry.

Two ledgers share one format:
- `MlflowLedger` (scolio_core.tracking.ledger): entries are tags on a sweep's parent run (scope = the
  sweep; tag names in scolio_core.tracking.schema), metrics go on that run.
- `FileLedger`: a JSON-lines file (default `~/.scoliotune/lockbox_ledger.jsonl`, or `$SCOLIO_LEDGER`),
  scope = the checkpoint's hash; used by standalone `scolio eval --split test`.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from scolio_core import __version__
from scolio_core.config import ExperimentConfig
from scolio_core.data.release import validate_release
from scolio_core.data.splits import Split
from scolio_core.errors import LockboxError
from scolio_core.evaluation.contract import check_contract
from scolio_core.evaluation.predict import predict_checkpoint
from scolio_core.training.checkpoint import Checkpoint, checkpoint_hash, git_commit
from scolio_core.training.metrics import bootstrap_ci, flatten_metrics


class Ledger(Protocol):
    def entries(self) -> list[dict]: ...

    def append(self, entry: dict) -> None: ...


class FileLedger:
    """JSON-lines ledger filtered to one scope; appends are serialised with an exclusive file lock."""

    def __init__(self, scope: str, path: str | Path | None = None) -> None:
        default = os.environ.get("SCOLIO_LEDGER") or Path.home() / ".scoliotune" / "lockbox_ledger.jsonl"
        self.path = Path(path or default)
        self.scope = scope

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [row for row in rows if row.get("scope") == self.scope]

    def append(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(json.dumps({"scope": self.scope, **entry}, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def evaluation_count(entries: list[dict]) -> int:
    """Test looks taken: every opened entry counts, finished or not."""
    return sum(1 for entry in entries if entry["state"] == "opened")


@dataclass
class LockboxResult:
    metrics: dict  # flat, keys prefixed "test/"
    reopened: bool
    attempt: int
    contract_overrides: list[str] = field(default_factory=list)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    predictions: dict = field(default_factory=dict)


def evaluate_test_once(checkpoint: Checkpoint, config: ExperimentConfig, split: Split, ledger: Ledger, *,
                       reopen: bool = False, override_contract: bool = False,
                       bootstrap_resamples: int = 1000, reopen_flag: str = "--reopen") -> LockboxResult:
    """Evaluate `checkpoint` on `split.test` once, recording it in `ledger` (see the module docstring).

    `config` supplies where the data lives and the input settings the data is prepared with; the
    checkpoint's contract must agree with it unless `override_contract` (recorded in the result).
    `reopen_flag` is how the caller's command line spells `reopen` (the refusal tells the user to pass it).
    """
    previous = ledger.entries()
    looks = evaluation_count(previous)
    if looks and not reopen:
        first = next(e for e in previous if e["state"] == "opened")
        unfinished = " (it never completed: results may have been seen)" if not any(
            e["state"] == "completed" for e in previous) else ""
        raise LockboxError(
            f"the test set was already evaluated {looks} time(s) for this scope (first at {first['time']}, "
            f"checkpoint {first['checkpoint_hash'][:12]}){unfinished}; a second look is refused. "
            f"Pass {reopen_flag} to evaluate again: the result will be labelled REOPENED everywhere.")
    trainval = split.trainval()
    overrides = check_contract(checkpoint, config, split.test, "test", trainval=trainval, override=override_contract)

    validate_test_files(config, split)  # before the look is recorded
    entry = {
        "attempt": looks + 1, "reopened": looks > 0, "checkpoint": str(checkpoint.directory),
        "checkpoint_hash": checkpoint_hash(checkpoint.directory), "split_fingerprint": split.fingerprint,
        "trainval_fingerprint": trainval.fingerprint, "partition": split.partition, "n_test": len(split.test),
        "contract_overrides": overrides, "code_version": __version__, "git_commit": git_commit(),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    ledger.append({**entry, "state": "opened"})

    predictions = predict_checkpoint(checkpoint, config, split.test)
    point = predictions.metrics()
    metrics = flatten_metrics(point, "test")
    intervals = bootstrap_ci(predictions.labels, predictions.predicted, n_resamples=bootstrap_resamples, seed=0)
    metrics.update(flatten_metrics(intervals, "test"))  # test/<name>/ci_low, test/<name>/ci_high
    metrics["test/reopened"] = float(looks > 0)
    ledger.append({**entry, "state": "completed", "metrics": metrics,
                   "time_completed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    return LockboxResult(metrics=metrics, reopened=looks > 0, attempt=looks + 1, contract_overrides=overrides,
                         confusion_matrix=point["confusion_matrix"],
                         predictions={i: int(p) for i, p in zip(predictions.ids, np.asarray(predictions.predicted))})


def validate_test_files(config: ExperimentConfig, split: Split) -> None:
    """Check the test files' format before a sweep starts (bad data must fail before compute).

    Files are read only to validate them; nothing derived from them is returned or kept.
    """
    root = config.data.modality_root(config.input.modality)
    validate_release(root, list(split.test), config.input.modality)
