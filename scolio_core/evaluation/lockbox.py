"""The one-shot test lockbox: the only code in scoliotune that reads test data.

Every evaluation on labelled ids that are not the checkpoint's own train/val ids is a *test look*. Looks
are recorded in a ledger keyed by the evaluated set itself — `test_set_key`: the sorted ids with their
classes and the modality — not by the checkpoint or the sweep, so every entry point that computes metrics on
labelled data (sweeps, `scolio eval`, the finetune stage) shares one record per test set.

A look is *claimed* before anything is read ("opened") and completed afterwards ("completed"), so a crash
during the test still counts as a look. Claiming look number n is atomic in every ledger (`claim` returns
False when another process took n first); the caller re-reads and decides again, so of two drivers racing
for the same test set exactly one evaluates. Records are only ever added, never overwritten.

Who may look (`decide`):
- a study (a sweep and its finetune stage, named by the sweep) looks once; re-running it reuses its
  completed look; a look it opened and never completed is refused unless `reopen` — then the look is
  labelled REOPENED everywhere (the finetune stage of a study that already looked does not ask);
- a standalone evaluation (`scolio eval`) is refused when the test set has any earlier look, unless
  `reopen`;
- a new study may look at a test set other studies already saw: the look is recorded with `seen_before`
  and `scolio audit` lists the earlier looks.

Ledgers: `FileLedger` here (a JSON-lines file, for work without MLflow; an exclusive lock spans read, check
and append), `scolio_core.tracking.ledger.MlflowLedger` in the tracking store the user works with.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
import sys
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from scolio_core import CLASS_NAMES, __version__
from scolio_core.config import ExperimentConfig
from scolio_core.data.release import index_release, validate_release
from scolio_core.data.splits import Split
from scolio_core.errors import DataError, LockboxError
from scolio_core.evaluation.contract import check_contract
from scolio_core.evaluation.predict import predict_checkpoint
from scolio_core.training.checkpoint import Checkpoint, checkpoint_hash, git_commit
from scolio_core.training.metrics import bootstrap_ci, flatten_metrics

OPENED, COMPLETED = "opened", "completed"


@dataclass(frozen=True)
class TestSet:
    """A set of labelled ids as the ledger knows it: `key` is its identity."""

    __test__ = False  # not a pytest class

    key: str
    ids: tuple[str, ...]
    modality: str
    class_counts: dict[str, int]


def test_set_key(ids: Sequence[str], labels: dict[str, int], modality: str) -> str:
    """sha256 over the sorted (id, class) pairs and the modality: the same test set under any partition
    file name, sweep or checkpoint gets the same key; another class assignment or modality another one."""
    pairs = sorted((seq_id, CLASS_NAMES[int(labels[seq_id])]) for seq_id in ids)
    text = json.dumps({"modality": modality, "sequences": pairs}, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


test_set_key.__test__ = False  # not a pytest test


def resolve_test_set(config: ExperimentConfig, ids: Sequence[str]) -> TestSet:
    """The ledger identity of `ids` under `config`'s data (classes from the release layout; no file read)."""
    modality = config.input.modality
    index = index_release(config.data.modality_root(modality))
    missing = sorted(set(ids) - set(index))
    if missing:
        raise DataError(f"{config.data.modality_root(modality)}: {len(missing)} evaluated id(s) are absent "
                        f"(e.g. {', '.join(missing[:5])})")
    labels = {seq_id: index[seq_id].label for seq_id in ids}
    counts = Counter(CLASS_NAMES[label] for label in labels.values())
    return TestSet(test_set_key(ids, labels, modality), tuple(sorted(ids)), modality,
                   {name: counts.get(name, 0) for name in CLASS_NAMES})


class Ledger(Protocol):
    """Looks at test sets. `claim` must be atomic: of two processes claiming the same look number of the
    same key, exactly one gets True."""

    def looks(self, key: str) -> list[dict]: ...

    def claim(self, key: str, look: int, record: dict) -> bool: ...

    def complete(self, key: str, look: int, record: dict) -> None: ...


class FileLedger:
    """JSON-lines ledger for work without MLflow. One exclusive lock spans read, check and append, so a claim
    is atomic between processes on one machine (or a file system with working `flock`)."""

    def __init__(self, path: str | Path | None = None) -> None:
        default = os.environ.get("SCOLIO_LEDGER") or Path.home() / ".scoliotune" / "lockbox_ledger.jsonl"
        self.path = Path(path or default)

    def _rows(self, data: bytes) -> list[dict]:
        rows = []
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                # A torn line (a crash mid-append). It may have been a claim, so it stays a look of unknown
                # outcome for whichever key it names, reported in one line.
                print(f"lockbox: {self.path}:{number}: torn ledger line (a crash while writing?); counted as a "
                      "look of unknown outcome", file=sys.stderr)
                row = {"torn": True, "raw": line[:300], "state": OPENED, "line": number}
            rows.append(row)
        return rows

    @staticmethod
    def _for_key(rows: list[dict], key: str) -> list[dict]:
        return _merge([r for r in rows if r.get("key") == key or (r.get("torn") and key[:16] in r.get("raw", ""))])

    def looks(self, key: str) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            return self._for_key(self._rows(handle.read()), key)

    def _locked_append(self, key: str, look: int, row: dict, *, claim: bool) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            data = handle.read()
            if claim and any(int(r["look"]) >= look for r in self._for_key(self._rows(data), key) if "look" in r):
                return False
            prefix = b"\n" if data and not data.endswith(b"\n") else b""  # never glue onto a torn last line
            handle.write(prefix + json.dumps({**row, "key": key, "look": look}, sort_keys=True).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
            return True

    def claim(self, key: str, look: int, record: dict) -> bool:
        return self._locked_append(key, look, {**record, "state": OPENED}, claim=True)

    def complete(self, key: str, look: int, record: dict) -> None:
        self._locked_append(key, look, {**record, "state": COMPLETED}, claim=False)


def _merge(rows: list[dict]) -> list[dict]:
    """One dict per look (its opened record updated by its completed record), in look order; torn lines
    count as looks of unknown outcome."""
    by_look: dict[int, dict] = {}
    torn = []
    for row in rows:
        if row.get("torn"):
            torn.append(row)
            continue
        merged = by_look.setdefault(int(row["look"]), {})
        merged.update(row)
        if row.get("state") == COMPLETED:
            merged["state"] = COMPLETED
    looks = [by_look[n] for n in sorted(by_look)]
    last = max(by_look, default=0)
    # A torn line gets the next number, so a later claim never reuses the number it may have taken.
    return looks + [{**row, "look": last + i} for i, row in enumerate(torn, start=1)]


@dataclass(frozen=True)
class Decision:
    action: str  # "look" | "reuse"
    reopened: bool = False
    seen_before: int = 0  # earlier looks at this test set by other studies or entry points
    recorded: dict | None = None  # the look to reuse
    own_before: int = 0  # the study's own earlier looks at this test set


def decide(looks: list[dict], *, study: str, standalone: bool, reopen: bool, reopen_flag: str) -> Decision:
    """Whether `study` may look at a test set with these earlier `looks` (see the module docstring)."""
    own = [look for look in looks if look.get("study") == study]
    others = [look for look in looks if look.get("study") != study]
    if standalone and looks and not reopen:
        first = looks[0]
        raise LockboxError(
            f"this test set was already looked at {len(looks)} time(s) (first: look {first.get('look')} by "
            f"{first.get('entry_point', 'an unknown entry point')} {first.get('study', '')!r} at "
            f"{first.get('time', '?')}, checkpoint {str(first.get('checkpoint_hash'))[:12]}); a second look is "
            f"refused. Pass {reopen_flag} to evaluate again: the result will be labelled REOPENED everywhere.")
    if own and not reopen:
        last = own[-1]
        if last.get("state") == COMPLETED and not standalone:
            # A re-run of the study (e.g. a restored sweep): its one look is done; reuse it, whatever it
            # selects now. A stage that would test another model must ask for --reopen-test.
            return Decision("reuse", reopened=bool(last.get("reopened")), recorded=last, own_before=len(own))
        raise LockboxError(f"study {study!r} already looked at this test set (look {last.get('look')} at "
                           f"{last.get('time')}; it was opened and never completed (a crash, or another process "
                           f"evaluating now): its results may have been seen); a second look is refused. Pass "
                           f"{reopen_flag} to look again: the result will be labelled REOPENED everywhere.")
    return Decision("look", reopened=bool(own) or (standalone and bool(looks)), seen_before=len(others),
                    own_before=len(own))


@dataclass
class LockboxResult:
    metrics: dict  # flat, keys prefixed "test/"
    reopened: bool
    attempt: int  # this study's look count at this test set (1 = one-shot)
    look: int  # the look's number in the test set's ledger
    test_set: TestSet | None = None
    reused: bool = False  # the recorded result of an earlier completed look (a re-run), not a new look
    seen_before: int = 0
    contract_overrides: list[str] = field(default_factory=list)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    predictions: dict = field(default_factory=dict)


class LookLog(Protocol):
    """Where a study mirrors its own looks (a sweep's parent run), besides the test-set ledger."""

    def append(self, entry: dict) -> None: ...


def evaluate_test_once(checkpoint: Checkpoint, config: ExperimentConfig, split: Split, ledger: Ledger, *,
                       study: str | None = None, entry_point: str = "scolio eval", reopen: bool = False,
                       override_contract: bool = False, bootstrap_resamples: int = 1000,
                       reopen_flag: str = "--reopen", ids: Sequence[str] | None = None, split_name: str = "test",
                       mirror: LookLog | None = None) -> LockboxResult:
    """Evaluate `checkpoint` on `ids` (default `split.test`) as one recorded look (see the module docstring).

    `study` names the research question the look belongs to (a sweep's name); without one the look is a
    standalone evaluation, refused when the test set was looked at before. `config` supplies where the data
    lives and the input settings; the checkpoint's contract must agree unless `override_contract` (recorded).
    `reopen_flag` is how the caller's command line spells `reopen` (the refusal tells the user to pass it).
    """
    ids = tuple(split.test if ids is None else ids)
    trainval = split.trainval()
    digest = checkpoint_hash(checkpoint.directory)
    standalone = study is None
    study = study or f"eval:{digest[:12]}"
    overrides = check_contract(checkpoint, config, ids, split_name, trainval=trainval, override=override_contract)
    test_set = resolve_test_set(config, ids)
    validate_release(config.data.modality_root(config.input.modality), list(ids), config.input.modality)
    record = {"checkpoint": str(checkpoint.directory), "checkpoint_hash": digest, "contract_overrides": overrides}
    decision, entry = _claim_look(ledger, test_set, config, split, study=study, entry_point=entry_point,
                                  standalone=standalone, reopen=reopen, reopen_flag=reopen_flag,
                                  split_name=split_name, record=record)
    if entry is None:
        recorded = decision.recorded
        return LockboxResult(metrics=recorded.get("metrics", {}), reopened=decision.reopened,
                             attempt=decision.own_before, look=int(recorded["look"]), test_set=test_set, reused=True,
                             seen_before=int(recorded.get("seen_before", 0)),
                             contract_overrides=list(recorded.get("contract_overrides", [])),
                             confusion_matrix=recorded.get("confusion_matrix", []))
    if mirror is not None:
        mirror.append({**entry, "test_set": test_set.key, "state": OPENED})

    predictions = predict_checkpoint(checkpoint, config, ids)
    point = predictions.metrics()
    metrics = flatten_metrics(point, "test")
    intervals = bootstrap_ci(predictions.labels, predictions.predicted, n_resamples=bootstrap_resamples, seed=0)
    metrics.update(flatten_metrics(intervals, "test"))  # test/<name>/ci_low, test/<name>/ci_high
    metrics["test/reopened"] = float(decision.reopened)
    completed = {"claim": entry["claim"], "study": study, "metrics": metrics,
                 "confusion_matrix": point["confusion_matrix"], "time_completed": _now()}
    ledger.complete(test_set.key, entry["look"], completed)
    if mirror is not None:
        mirror.append({**entry, **completed, "test_set": test_set.key, "state": COMPLETED})
    return LockboxResult(metrics=metrics, reopened=decision.reopened, attempt=entry["attempt"], look=entry["look"],
                         test_set=test_set, seen_before=decision.seen_before, contract_overrides=overrides,
                         confusion_matrix=point["confusion_matrix"],
                         predictions={i: int(p) for i, p in zip(predictions.ids, np.asarray(predictions.predicted))})


@dataclass
class ModelsLookResult:
    """One look that tested several models declared before it opened (e.g. the seeds of a fixed recipe)."""

    confusion_matrices: dict[str, list[list[int]]]  # per model label, rows = truth (CLASS_NAMES order)
    reopened: bool
    look: int
    test_set: TestSet
    reused: bool = False
    seen_before: int = 0


def evaluate_models_once(checkpoints: Mapping[str, Checkpoint], config: ExperimentConfig, split: Split,
                         ledger: Ledger, *, study: str, entry_point: str, reopen: bool = False,
                         reopen_flag: str = "--reopen-test", mirror: LookLog | None = None) -> ModelsLookResult:
    """Test every model in `checkpoints` (label -> checkpoint) on `split.test` as ONE look of `study`.

    The set of models is fixed before the look opens and every one is reported, so nothing is chosen by
    test (the seeds of a fixed recipe, for a mean and CI over seeds). Each contract is checked first. The
    ledger keeps each model's confusion matrix (every metric follows from it, and it stays small enough for
    MLflow's tag limits however many seeds); a re-run of the study reuses them.
    """
    if not checkpoints:
        raise LockboxError(f"study {study!r}: no models to test")
    ids = tuple(split.test)
    trainval = split.trainval()
    hashes = {label: checkpoint_hash(cp.directory) for label, cp in checkpoints.items()}
    for checkpoint in checkpoints.values():
        check_contract(checkpoint, config, ids, "test", trainval=trainval, override=False)
    test_set = resolve_test_set(config, ids)
    validate_release(config.data.modality_root(config.input.modality), list(ids), config.input.modality)
    record = {"checkpoints": {label: str(cp.directory) for label, cp in checkpoints.items()},
              "checkpoint_hashes": hashes,
              "checkpoint_hash": hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(),
              "contract_overrides": []}
    decision, entry = _claim_look(ledger, test_set, config, split, study=study, entry_point=entry_point,
                                  standalone=False, reopen=reopen, reopen_flag=reopen_flag, split_name="test",
                                  record=record)
    if entry is None:
        recorded = decision.recorded
        return ModelsLookResult(confusion_matrices=recorded.get("confusion_matrices", {}),
                                reopened=decision.reopened, look=int(recorded["look"]), test_set=test_set,
                                reused=True, seen_before=int(recorded.get("seen_before", 0)))
    if mirror is not None:
        mirror.append({**entry, "test_set": test_set.key, "state": OPENED})
    matrices = {}
    for label, checkpoint in checkpoints.items():
        matrices[label] = predict_checkpoint(checkpoint, config, ids).metrics()["confusion_matrix"]
    completed = {"claim": entry["claim"], "study": study, "confusion_matrices": matrices,
                 "metrics": {"test/reopened": float(decision.reopened)}, "time_completed": _now()}
    ledger.complete(test_set.key, entry["look"], completed)
    if mirror is not None:
        mirror.append({**entry, **completed, "test_set": test_set.key, "state": COMPLETED})
    return ModelsLookResult(confusion_matrices=matrices, reopened=decision.reopened, look=entry["look"],
                            test_set=test_set, seen_before=decision.seen_before)


def _claim_look(ledger: Ledger, test_set: TestSet, config: ExperimentConfig, split: Split, *, study: str,
                entry_point: str, standalone: bool, reopen: bool, reopen_flag: str, split_name: str,
                record: dict) -> tuple[Decision, dict | None]:
    """Decide and atomically claim the next look at `test_set` for `study`: (decision, the claimed entry),
    or (decision, None) when the study's completed look is to be reused."""
    trainval = split.trainval()
    while True:
        looks = ledger.looks(test_set.key)
        decision = decide(looks, study=study, standalone=standalone, reopen=reopen, reopen_flag=reopen_flag)
        if decision.action == "reuse":
            return decision, None
        number = max([int(look["look"]) for look in looks if "look" in look], default=0) + 1
        entry = {
            "look": number, "study": study, "entry_point": entry_point, "claim": uuid.uuid4().hex,
            "attempt": decision.own_before + 1, "reopened": decision.reopened, "seen_before": decision.seen_before,
            "split_name": split_name, "n_test": len(test_set.ids), "class_counts": test_set.class_counts,
            "modality": test_set.modality, **record,
            "input": config.input.__dict__, "model": config.model.__dict__,
            "split_fingerprint": split.fingerprint, "trainval_fingerprint": trainval.fingerprint,
            "partition": split.partition, "code_version": __version__, "git_commit": git_commit(), "time": _now(),
        }
        if ledger.claim(test_set.key, number, entry):
            return decision, entry
        # Another process took this look number first: read again and decide again (it may be our own
        # study's look now, to reuse or to refuse).


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def evaluation_count(entries: list[dict]) -> int:
    """Looks taken in a list of ledger entries: every opened entry counts, finished or not."""
    return sum(1 for entry in entries if entry.get("state") == OPENED)


def validate_test_files(config: ExperimentConfig, split: Split) -> None:
    """Check the test files' format before a sweep starts (bad data must fail before compute).

    Files are read only to validate them; nothing derived from them is returned or kept.
    """
    root = config.data.modality_root(config.input.modality)
    validate_release(root, list(split.test), config.input.modality)
