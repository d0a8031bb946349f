"""The one-shot test lockbox: the only code in scoliotune that reads test data.

Every evaluation on labelled ids that are not the checkpoint's own train/val ids is a *test look*. A look is
a set of scored (sequence id, class) pairs: the ledger records, with each look, the pairs it scored (and the
evaluated set's identity `test_set_key`: the sorted ids with their classes and the modality). Whether a look
is a first one is decided on the *ids*, not on the key: a subset or superset of a test set, the same ids in
the other modality, another checkpoint, all touch the same sequences, so every entry point that computes
metrics on labelled data (sweeps, `scolio eval`, the finetune stage) sees every earlier look at any of its ids.

A look is *claimed* before anything is read ("opened") and completed afterwards ("completed"), so a crash
during the test still counts as a look. Claiming look number n is atomic in every ledger (`claim` returns
False when another process took n first); the caller re-reads and decides again, so of two drivers racing
for the same test set exactly one evaluates. Records are only ever added, never overwritten.

Who may look (`decide`):
- a study (a sweep and its finetune stage, named by the sweep) looks once; re-running it reuses its
  completed look; a look it opened and never completed is refused unless `reopen` — then the look is
  labelled REOPENED everywhere (the finetune stage of a study that already looked does not ask);
- a standalone evaluation (`scolio eval`) is refused when any of its ids was scored by an earlier look,
  unless `reopen`;
- a study that looked at one test set is refused a look at another that shares ids with it (a re-run of a
  study on another split is another study: a new name), unless `reopen`;
- a new study may look at ids other studies already saw: the look is recorded with `seen_before` and
  `scolio audit` lists the earlier looks (and the earlier studies' audits list it as a re-look).

Studies and families: a look belongs to a study (a sweep and its finetune stage share one) and a *family*
(`family`, default the study). The partitions of one table (sweeps/table.py: `<table>-p112`, `-p114`, ...)
are one family: the official partitions' test sets overlap each other and each other's TRAIN_SETs by design,
so a partition's look at ids a sibling partition also tests is not a re-look, and a partition training on a
sibling's test ids is not a use of another study's test set. Every other overlap is.

Training and validating on test ids (`check_trainval_use`): ids that a study's test looks scored are its
test ids. A split whose train or val ids include a study's own test ids is refused before compute; one that
includes another study's test ids is refused (`scolio train`: no study to record it under) or recorded as a
`use` look of the new study (a sweep), which the earlier study's audit lists. `train.allow_contract_change`
changes none of this.

Tamper evidence: looks are numbered and, in the MLflow ledger, hash-chained (each look's hash covers the one
before it); a study's parent run keeps the hash of every look that touched its test ids. The FileLedger
chains each appended line to a hash of every byte before it.

Ledgers: `FileLedger` here (a JSON-lines file, for work without MLflow; an exclusive lock spans read, check
and append), `scolio_core.tracking.ledger.MlflowLedger` in the tracking store the user works with.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from scolio_core import __version__, names
from scolio_core.config import ExperimentConfig
from scolio_core.data.release import validate_release
from scolio_core.data.splits import Split, TrainValSplit
from scolio_core.errors import LockboxError
from scolio_core.evaluation.contract import check_contract
from scolio_core.evaluation.looks import (
    COMPLETED,
    OPENED,
    FileLedger,
    Ledger,
    TestSet,
    dataset_identity,
    family_of,
    ids_of,
    kind_of,
    look_hash,
    looks_text,
    resolve_test_set,
    touched,
)
from scolio_core.evaluation.predict import predict_checkpoint
from scolio_core.provenance import git_commit
from scolio_core.training.checkpoint import Checkpoint, checkpoint_hash, hashes_digest
from scolio_core.training.ensemble import Ensemble, model_hash
from scolio_core.training.inference import Predictions
from scolio_core.training.metrics import bootstrap_ci, flatten_metrics


@dataclass(frozen=True)
class Decision:
    action: str  # "look" | "reuse"
    reopened: bool = False
    seen_before: int = 0  # earlier looks at this test set by other studies or entry points
    recorded: dict | None = None  # the look to reuse
    own_before: int = 0  # the study's own earlier looks at this test set


def decide(looks: list[dict], *, study: str, standalone: bool, reopen: bool, reopen_flag: str,
           key: str | None = None, ids: frozenset[str] | None = None, family: str | None = None) -> Decision:
    """Whether `study` may look at the set `key` (ids `ids`) given the earlier `looks` that scored any of
    those ids (see the module docstring). Without `key`/`ids` every look given counts as a look at this very
    set (what the ledger knew before looks recorded their ids)."""
    family = family or study
    own_all = [look for look in looks if look.get("study") == study and kind_of(look) == names.LOOK_KIND_TEST]
    own = [look for look in own_all if key is None or look.get("key") in (key, None)]
    elsewhere = [look for look in own_all if look not in own]  # the study's looks at another, overlapping set
    others = [look for look in looks if look.get("study") != study and family_of(look) != family]
    if standalone and looks and not reopen:
        exact = key is None or any(look.get("key") == key for look in looks)
        subject = "this test set was" if exact else "these ids were"
        scored = ""
        if ids:
            seen = set()
            for look in looks:
                seen |= (ids_of(look) or (ids if look.get("key") == key else frozenset())) & ids
            scored = f": {len(seen)} of its {len(ids)} ids were scored with labels before"
        raise LockboxError(
            f"{subject} already looked at {len(looks)} time(s){scored} ({looks_text(looks, ids, key)}); a second "
            f"look is refused. Pass {reopen_flag} to evaluate again: the result will be labelled REOPENED everywhere.")
    if elsewhere and not reopen:
        last = elsewhere[-1]
        share = f"{touched(last, ids, key)} of these {len(ids)} ids" if ids else "ids"
        raise LockboxError(
            f"study {study!r} already looked at another test set that shares {share} (look {last.get('look')} at "
            f"{last.get('time')}, split {str(last.get('split_fingerprint'))[:12]}): a study has one test set, and a "
            f"re-run on another split is another study: use a new name (or pass {reopen_flag}: the result will be "
            "labelled REOPENED everywhere)")
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
    return Decision("look", reopened=bool(own_all) or (standalone and bool(looks)), seen_before=len(others),
                    own_before=len(own_all))


@dataclass
class LockboxResult:
    metrics: dict  # flat, keys prefixed "test/" (names.TEST_METRIC_PREFIX)
    reopened: bool
    attempt: int  # this study's look count at this test set (1 = one-shot)
    look: int  # the look's number in the test set's ledger
    test_set: TestSet | None = None
    reused: bool = False  # the recorded result of an earlier completed look (a re-run), not a new look
    seen_before: int = 0
    contract_overrides: list[str] = field(default_factory=list)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    predictions: dict = field(default_factory=dict)
    model_hash: str = ""  # the hash of the model the look tested (a reused look: the one recorded then)


class LookLog(Protocol):
    """Where a study mirrors its own looks (a sweep's parent run), besides the test-set ledger."""

    def append(self, entry: dict) -> None: ...


def evaluate_test_once(checkpoint: Checkpoint | Ensemble, config: ExperimentConfig, split: Split, ledger: Ledger, *,
                       study: str | None = None, entry_point: str = "scolio eval", reopen: bool = False,
                       override_contract: bool = False, bootstrap_resamples: int = 1000,
                       reopen_flag: str = "--reopen", ids: Sequence[str] | None = None, split_name: str = "test",
                       mirror: LookLog | None = None, family: str | None = None) -> LockboxResult:
    """Evaluate `checkpoint` on `ids` (default `split.test`) as one recorded look (see the module docstring).

    `study` names the research question the look belongs to (a sweep's name); without one the look is a
    standalone evaluation, refused when the test set was looked at before. `config` supplies where the data
    lives and the input settings; the checkpoint's contract must agree unless `override_contract` (recorded).
    `reopen_flag` is how the caller's command line spells `reopen` (the refusal tells the user to pass it).
    `family`: the study's family (a table's partitions are one; default the study itself).
    A seed ensemble (scolio_core/training/ensemble.py) is one model and one look: its hash is `model_hash`, and
    the record also names each member's checkpoint hash and the rule that chose the members.
    """
    ids = tuple(split.test if ids is None else ids)
    digest = model_hash(checkpoint.directory)
    standalone = study is None
    study = study or f"eval:{digest[:12]}"
    overrides = check_contract(checkpoint, config, ids, split_name, trainval=split.trainval(),
                               override=override_contract)
    record = {"checkpoint": str(checkpoint.directory), "checkpoint_hash": digest, "contract_overrides": overrides}
    if isinstance(checkpoint, Ensemble):
        record.update(members={m.directory.name: hashes_digest(m.hashes) for m in checkpoint.members},
                      rule=checkpoint.rule)

    def evaluate(decision: Decision) -> tuple[dict, Predictions]:
        predictions = predict_checkpoint(checkpoint, config, ids)
        point = predictions.metrics()
        metrics = flatten_metrics(point, names.SPLIT_TEST)
        intervals = bootstrap_ci(predictions.labels, predictions.predicted, n_resamples=bootstrap_resamples, seed=0)
        metrics.update(flatten_metrics(intervals, names.SPLIT_TEST))  # test/<name>/ci_low, test/<name>/ci_high
        metrics[names.METRIC_TEST_REOPENED] = float(decision.reopened)
        return {"metrics": metrics, "confusion_matrix": point["confusion_matrix"]}, predictions

    look = _run_look(ledger, config, split, ids, study=study, entry_point=entry_point, standalone=standalone,
                     reopen=reopen, reopen_flag=reopen_flag, split_name=split_name, record=record, mirror=mirror,
                     evaluate=evaluate, family=family)
    decision, recorded = look.decision, look.recorded
    if look.entry is None:  # the study's completed look, reused
        return LockboxResult(metrics=recorded.get("metrics", {}), reopened=decision.reopened,
                             attempt=decision.own_before, look=int(recorded["look"]), test_set=look.test_set,
                             reused=True, seen_before=int(recorded.get("seen_before", 0)),
                             contract_overrides=list(recorded.get("contract_overrides", [])),
                             confusion_matrix=recorded.get("confusion_matrix", []),
                             model_hash=str(recorded.get("checkpoint_hash") or ""))
    predictions = look.kept
    return LockboxResult(metrics=recorded["metrics"], reopened=decision.reopened, attempt=look.entry["attempt"],
                         look=look.entry["look"], test_set=look.test_set, seen_before=decision.seen_before,
                         contract_overrides=overrides, confusion_matrix=recorded["confusion_matrix"], model_hash=digest,
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
                         reopen_flag: str = "--reopen-test", mirror: LookLog | None = None,
                         family: str | None = None) -> ModelsLookResult:
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
    record = {"checkpoints": {label: str(cp.directory) for label, cp in checkpoints.items()},
              "checkpoint_hashes": hashes,
              "checkpoint_hash": hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(),
              "contract_overrides": []}

    def evaluate(decision: Decision) -> tuple[dict, None]:
        matrices = {label: predict_checkpoint(checkpoint, config, ids).metrics()["confusion_matrix"]
                    for label, checkpoint in checkpoints.items()}
        return {"confusion_matrices": matrices,
                "metrics": {names.METRIC_TEST_REOPENED: float(decision.reopened)}}, None

    look = _run_look(ledger, config, split, ids, study=study, entry_point=entry_point, standalone=False,
                     reopen=reopen, reopen_flag=reopen_flag, split_name="test", record=record, mirror=mirror,
                     evaluate=evaluate, family=family)
    if look.entry is None:  # the study's completed look, reused
        return ModelsLookResult(confusion_matrices=look.recorded.get("confusion_matrices", {}),
                                reopened=look.decision.reopened, look=int(look.recorded["look"]),
                                test_set=look.test_set, reused=True,
                                seen_before=int(look.recorded.get("seen_before", 0)))
    return ModelsLookResult(confusion_matrices=look.recorded["confusion_matrices"], reopened=look.decision.reopened,
                            look=look.entry["look"], test_set=look.test_set, seen_before=look.decision.seen_before)


@dataclass(frozen=True)
class _Look:
    """What `_run_look` did: a new look (`entry` claimed, `recorded` = its completion record, `kept` = what
    the evaluation handed back besides it), or the study's completed look reused (`entry` None, `recorded` =
    that look as the ledger holds it, nothing evaluated)."""

    test_set: TestSet
    decision: Decision
    entry: dict | None
    recorded: dict
    kept: Any = None


def _run_look(ledger: Ledger, config: ExperimentConfig, split: Split, ids: tuple[str, ...], *, study: str,
              entry_point: str, standalone: bool, reopen: bool, reopen_flag: str, split_name: str, record: dict,
              mirror: LookLog | None, evaluate: Callable[[Decision], tuple[dict, Any]],
              family: str | None = None) -> _Look:
    """The steps every look shares, after the caller checked its contracts: identify the test set and validate
    its files, claim the look (or find the study's completed one to reuse), mirror the claim, run
    `evaluate(decision)` -> (fields of the completion record, anything the caller keeps), complete the look in
    the ledger and mirror that. The claim is written before `evaluate` reads any test data."""
    test_set = resolve_test_set(config, ids)
    validate_release(config.data.modality_root(config.input.modality), list(ids), config.input.modality)
    if isinstance(ledger, FileLedger):  # its chain is checked here: nothing else reads a file ledger's history
        edited = ledger.integrity()
        if edited:
            raise LockboxError(f"{edited[0]}; no look is taken on an edited ledger: restore the file")
    parent = getattr(mirror, "run_id", None)
    decision, entry = _claim_look(ledger, test_set, config, split, study=study, entry_point=entry_point,
                                  standalone=standalone, reopen=reopen, reopen_flag=reopen_flag,
                                  split_name=split_name, record={**record, "parent_run_id": parent},
                                  family=family)
    if entry is None:
        return _Look(test_set, decision, None, decision.recorded or {})
    if mirror is not None:
        mirror.append({**_slim(entry), "test_set": test_set.key, "state": OPENED})
    fields, kept = evaluate(decision)
    completed = {"claim": entry["claim"], "study": study, **fields, "time_completed": _now()}
    ledger.complete(test_set.key, entry["look"], completed)
    if mirror is not None:
        mirror.append({**_slim(entry), **completed, "test_set": test_set.key, "state": COMPLETED})
    return _Look(test_set, decision, entry, completed, kept)


def _slim(entry: dict) -> dict:
    """A look's entry as a study's parent run mirrors it: without the scored pairs (the ledger keeps them;
    1,493 pairs would not fit MLflow's tag limit), with their count."""
    return {k: v for k, v in entry.items() if k != "pairs"}


def _claim_look(ledger: Ledger, test_set: TestSet, config: ExperimentConfig, split: Split, *, study: str,
                entry_point: str, standalone: bool, reopen: bool, reopen_flag: str, split_name: str,
                record: dict, family: str | None = None) -> tuple[Decision, dict | None]:
    """Decide and atomically claim the next look at `test_set` for `study`: (decision, the claimed entry),
    or (decision, None) when the study's completed look is to be reused. The decision sees every earlier look
    that scored any of the set's ids; the studies those looks belong to are told (`notify`) once the claim holds."""
    trainval = split.trainval()
    ids = frozenset(test_set.ids)
    family = family or study
    dataset = dataset_identity(config.data.root)
    while True:
        every = ledger.all_looks()
        earlier = [look for look in every if touched(look, ids, test_set.key, dataset)]
        decision = decide(earlier, study=study, standalone=standalone, reopen=reopen, reopen_flag=reopen_flag,
                          key=test_set.key, ids=ids, family=family)
        if decision.action == "reuse":
            return decision, None
        number = ledger.next_look(test_set.key, every)
        touches: dict[str, int] = {}
        for look in earlier:
            if look.get("study") != study:
                touches[str(look.get("study"))] = max(touches.get(str(look.get("study")), 0), touched(look, ids, test_set.key))
        entry = {
            "look": number, "study": study, "family": family, "kind": names.LOOK_KIND_TEST,
            "entry_point": entry_point, "claim": uuid.uuid4().hex,
            "attempt": decision.own_before + 1, "reopened": decision.reopened, "seen_before": decision.seen_before,
            "split_name": split_name, "n_test": len(test_set.ids), "class_counts": test_set.class_counts,
            "modality": test_set.modality, **record,
            "input": config.input.__dict__, "model": config.model.__dict__,
            "split_fingerprint": split.fingerprint, "trainval_fingerprint": trainval.fingerprint,
            "partition": split.partition, "code_version": __version__, "git_commit": git_commit(), "time": _now(),
            "touches": touches, "dataset": dataset, "pairs": [list(pair) for pair in test_set.pairs],
        }
        if ledger.claim(test_set.key, number, entry):
            entry["look_hash"] = look_hash({k: v for k, v in entry.items() if k != "pairs"}, entry["pairs"])
            _notify(ledger, earlier, entry)
            return decision, entry
        # Another process took this look number first: read again and decide again (it may be our own
        # study's look now, to reuse or to refuse).


def _notify(ledger: Ledger, earlier: list[dict], entry: dict) -> None:
    """Tell every study whose test ids the new look scores (its parent run) that look n happened, with its
    hash: the study then holds a record the ledger cannot lose without it showing (names.TAG_LOCKBOX_SEEN)."""
    notify = getattr(ledger, "notify", None)
    parents = sorted({str(look["parent_run_id"]) for look in earlier
                      if look.get("parent_run_id") and kind_of(look) == names.LOOK_KIND_TEST})
    if notify is not None and parents:
        notify(parents, entry["look"], entry["look_hash"])


def trainval_conflicts(every: list[dict], ids: frozenset[str], *, study: str | None, family: str | None = None,
                       dataset: str | None = None) -> tuple[list[tuple[dict, int]], list[tuple[dict, int]]]:
    """(own, foreign): the test looks in `every` that scored any of `ids` (train/val ids), each with how many;
    own = `study`'s looks, foreign = other studies' (looks of `study`'s family are neither: one study)."""
    family = family or study
    own, foreign = [], []
    for look in every:
        if kind_of(look) != names.LOOK_KIND_TEST:
            continue
        count = touched(look, ids, dataset=dataset)
        if not count:
            continue
        if study is not None and look.get("study") == study:
            own.append((look, count))
        elif study is None or family_of(look) != family:
            foreign.append((look, count))
    return own, foreign


def check_trainval_use(ledger: Ledger, trainval: TrainValSplit, *, study: str | None, entry_point: str,
                       family: str | None = None, dataset: str | None = None) -> dict | None:
    """Before any compute: train/val ids that are test ids of a study in `ledger` (ids a test look scored).

    - the study's own test ids: refused (a study never trains or selects on its test set, whatever
      `train.allow_contract_change` says);
    - another study's test ids, no study to record it under (`scolio train`, `study=None`): refused;
    - another study's test ids, a study (a sweep): recorded once as a `use` look of `study` (returned, with
      `touched` = how many of those ids it uses), which the other study's audit lists as a re-look.
    Returns None when the split touches no other study's test ids."""
    ids = frozenset(trainval.train) | frozenset(trainval.val)
    family = family or study
    while True:
        every = ledger.all_looks()
        own, foreign = trainval_conflicts(every, ids, study=study, family=family, dataset=dataset)
        if own:
            count = len(frozenset().union(*(ids_of(look) or frozenset() for look, _ in own)) & ids)
            raise LockboxError(
                f"{entry_point}: study {study!r} would train or validate on {count} of its own test ids "
                f"({looks_text([look for look, _ in own], ids)}); a study never trains or selects on its test set "
                f"(train.allow_contract_change does not change this): use the split of the study's look, "
                f"{str(own[-1][0].get('split_fingerprint'))[:12]} ({own[-1][0].get('partition')})")
        if not foreign:
            return None
        used = sorted({tuple(pair) for look, _ in foreign for pair in (look.get("pairs") or []) if pair[0] in ids})
        studies = sorted({str(look.get("study")) for look, _ in foreign})
        if study is None:
            raise LockboxError(
                f"{len(used)} of the {len(ids)} train/val ids of {trainval.partition} are test ids of study "
                f"{studies[0]!r}" + (f" (and {len(studies) - 1} other stud(ies))" if len(studies) > 1 else "")
                + f" ({looks_text([look for look, _ in foreign], ids)}): training or validating on them uses that "
                "study's test labels. Use a partition whose TRAIN_SET leaves them out, or run it as a sweep (a new "
                "study), where the use is recorded for that study's audit")
        digest = hashlib.sha256(json.dumps(used).encode()).hexdigest()
        for look in every:
            if look.get("study") == study and kind_of(look) == names.LOOK_KIND_USE \
                    and look.get("pairs_sha256") == digest:
                return {**look, "touched": len(used)}  # a re-run of the same study: recorded once
        key = hashlib.sha256(json.dumps({"use": used}).encode()).hexdigest()
        number = ledger.next_look(key, every)
        entry = {
            "look": number, "study": study, "family": family, "kind": names.LOOK_KIND_USE,
            "entry_point": entry_point, "claim": uuid.uuid4().hex, "split_name": "trainval",
            "n_test": len(used), "pairs_sha256": digest, "partition": trainval.partition,
            "trainval_fingerprint": trainval.fingerprint, "checkpoint_hash": None, "reopened": False,
            "touches": {s: sum(1 for pair in used if any(pair[0] in (ids_of(look) or ()) for look, _ in foreign
                                                          if look.get("study") == s)) for s in studies},
            "dataset": dataset,
            "code_version": __version__, "git_commit": git_commit(), "time": _now(),
            "pairs": [list(pair) for pair in used],
        }
        if ledger.claim(key, number, entry):
            entry["look_hash"] = look_hash({k: v for k, v in entry.items() if k != "pairs"}, entry["pairs"])
            ledger.complete(key, number, {"claim": entry["claim"], "study": study, "time_completed": _now()})
            _notify(ledger, [look for look, _ in foreign], entry)
            return {**entry, "touched": len(used)}


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
