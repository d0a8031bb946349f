"""The audit of a sweep's record: was the winner selected on val, and how often was test looked at?

    audit = audit_sweep(resolve_tracking_uri(None), "repr-sweep")   # scolio audit
    print(audit["verdict"])                                          # format_audit(audit)

Reads only the MLflow record (tracking/record.py) and the store's test-set ledger (tracking/ledger.py).
`problems` non-empty means not clean: test evaluated more than once, selection not on val or not the best val
trial, a confirmation that does not follow its declared rule, test data that does not match the winner's
checkpoint contract, any look by another study or entry point (any checkpoint, modality or key) that scored
some of this study's test ids — before its look (seen before) or after it (a re-look), with how many — or a
ledger that was tampered with (a look deleted, purged, renamed or edited; a parent's look entry rewritten).

A study is audited whichever of its stages is named: the look a finetune stage took for the study is found
from the baseline's parent run and the other way round (names.TAG_STUDY_FINAL_PARENT). A table partition
(sweeps/table.py) has no single winner: each seed's model is its best checkpoint on val and the partition's
one look tested them all; its sibling partitions are one study with it (their test sets overlap by design).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from scolio_core import names
from scolio_core.evaluation.looks import TABLE_FAMILY_PREFIX
from scolio_core.tracking.answer_view import answer_audit, answer_audit_lines
from scolio_core.tracking.record import (
    SweepRecord,
    Trial,
    config_key,
    confirmation_record,
    download_json,
    load_sweep,
)

_TIE = 1e-9  # scores closer than this count as equal when checking the selection


def audit_sweep(tracking_uri: str, sweep_name: str, experiment: str = names.DEFAULT_EXPERIMENT,
                record: SweepRecord | None = None) -> dict:
    """What the record says about selection and test use; `problems` non-empty means not clean."""
    record = record or load_sweep(tracking_uri, sweep_name, experiment)
    tags, problems, warnings = record.tags, [], []
    metric, mode = record.metric, record.mode
    selection_split = tags.get(names.TAG_SELECTION_SPLIT)
    if selection_split != names.SPLIT_VAL:
        problems.append(f"the winner was selected on {selection_split!r}, not 'val'" if selection_split
                        else f"the selection split ({names.TAG_SELECTION_SPLIT}) is not recorded")

    winner = record.winner()
    scores = {t.run_id: t.best(metric, mode)[1] for t in record.trials}
    scored = {k: v for k, v in scores.items() if not math.isnan(v)}
    best_value = (max if mode == "max" else min)(scored.values()) if scored else math.nan
    best_runs = [k for k, v in scored.items() if abs(v - best_value) <= _TIE]
    winner_value = scores.get(winner.run_id, math.nan) if winner else math.nan
    winner_is_best = bool(winner and winner.run_id in best_runs)
    confirmed = confirmation_record(record)
    table = tags.get(names.TAG_TABLE) if (tags.get(names.TAG_KIND) == "table" or names.TAG_TABLE in tags) else None
    if table is not None:  # a table partition: every seed's model is tested; there is no winner to select
        winner_is_best = True
    elif winner is None:
        problems.append(f"no winner recorded ({names.TAG_SELECTED_RUN_ID} / {names.TAG_SELECTED_TRIAL} "
                        "name no child run of this sweep)")
    elif confirmed is not None:  # selected by the confirmation's rule, not as the search's best trial
        found = confirmation_problems(record, confirmed)
        problems.extend(found)
        winner_is_best = not found
        winner_value = winner.best(metric, mode)[1]
    elif not winner_is_best:
        better = next(t for t in record.trials if t.run_id == best_runs[0])
        problems.append(f"the selected trial {winner.trial_id} has best {metric} = {winner_value:.4f}, but trial "
                        f"{better.trial_id} (run {better.run_id}) reached {best_value:.4f}")

    from scolio_core.evaluation.lockbox import evaluation_count

    # Where the study's look is mirrored: this parent, or the parent of the stage whose model the study tested.
    parent_id = record.parent.info.run_id
    final_parent = tags.get(names.TAG_STUDY_FINAL_PARENT)
    entries, tested_parent = record.ledger, parent_id
    if not entries and final_parent and final_parent != parent_id:
        entries, tested_parent = _parent_log(tracking_uri, final_parent).entries(), final_parent
    opened = [e for e in entries if e.get("state") == "opened"]
    completed_attempts = {e.get("attempt") for e in entries if e.get("state") == "completed"}
    evaluations = max(evaluation_count(entries), int(tags.get(names.TAG_LOCKBOX_EVALUATIONS, 0) or 0))
    # The store's ledger sees every entry point: this study's looks, and every look by another study or entry
    # point that scored any of its test ids (under any test-set key, modality or checkpoint).
    study = tags.get(names.TAG_STUDY) or record.name  # a finetune stage belongs to its baseline's study
    key = tags.get(names.TAG_TEST_SET) or next((e.get("test_set") for e in entries if e.get("test_set")), None)
    family = TABLE_FAMILY_PREFIX + table if table else study  # a table's partitions: one family, its own namespace
    view = study_looks(tracking_uri, study, family, key, {parent_id, tested_parent}, entries)
    own, before, after = view["own"], view["before"], view["after"]
    test_ids = view["test_ids"]
    relooks = [look for look, _ in after if look.get("kind", names.LOOK_KIND_TEST) == names.LOOK_KIND_TEST]
    evaluations = max(evaluations, len(own) + len(relooks))
    if own and before:
        problems.append(f"the test set had been looked at {len(before)} time(s) before this study's first look ("
                        + "; ".join(f"{_look_line(look)}: {n} of this study's {test_ids} test ids" for look, n in before)
                        + "): not a first look")
    for look, n in after:
        verb = ("trained/validated on" if look.get("kind") == names.LOOK_KIND_USE else "scored")
        problems.append(f"{_look_line(look)}{_look_detail(look)}: {verb} {n} of this study's {test_ids} test ids "
                        "after its look (a re-look)")
    problems.extend(f"ledger tampering: {text}" for text in view["tampering"])
    reopened = sorted(e["attempt"] for e in opened if e.get("reopened"))
    if evaluations > 1:
        problems.append(f"the test set was evaluated {evaluations} times"
                        + (f" (reopened attempt(s): {', '.join(map(str, reopened))})" if reopened else ""))
    for entry in opened:
        if entry.get("attempt") not in completed_attempts:
            warnings.append(f"test attempt {entry.get('attempt')} was opened but never completed "
                            "(its results may have been seen)")
    if evaluations == 0:
        if any(k.startswith(names.TEST_METRIC_PREFIX) for k in record.parent.data.metrics):
            problems.append("test metrics are recorded on the parent run without any lockbox ledger entry")
        else:
            warnings.append("the test set has not been evaluated yet")
    if tested_parent != parent_id:
        warnings.append(f"the study's look tested the model of its stage with parent run {tested_parent}")
    looks = view["key_looks"]

    split_fp = tags.get(names.TAG_SPLIT_FINGERPRINT)
    for entry in opened:
        if split_fp and entry.get("split_fingerprint") != split_fp:
            problems.append(f"test attempt {entry['attempt']} ran on split {str(entry.get('split_fingerprint'))[:12]}, "
                            f"the sweep's split is {split_fp[:12]}")
        if entry.get("contract_overrides"):
            problems.append(f"test attempt {entry['attempt']} overrode the checkpoint contract: "
                            + "; ".join(map(str, entry["contract_overrides"])))

    contract_info: dict[str, Any] = {"found": False}
    tested_run = winner.run_id if winner is not None else None
    if tested_parent != parent_id:  # the study tested another stage's winner: check the look against that one
        tested_run = _selected_run(tracking_uri, tested_parent) or tested_run
    if tested_run is not None and table is None:
        contract = download_json(tracking_uri, tested_run, f"{names.ARTIFACT_CHECKPOINT}/contract.json")
        if contract is None:
            (problems if evaluations else warnings).append(
                f"the winner's run {tested_run} has no checkpoint/contract.json artifact: the tested data "
                "cannot be checked against its contract")
        else:
            contract_fp = (contract.get("split") or {}).get("fingerprint")
            contract_info = {"found": True, "trainval_fingerprint": contract_fp,
                             "partition": (contract.get("split") or {}).get("partition")}
            expected = {f"test attempt {e['attempt']}": e.get("trainval_fingerprint") for e in opened}
            if tags.get(names.TAG_TRAINVAL_FINGERPRINT):
                expected[f"the sweep ({names.TAG_TRAINVAL_FINGERPRINT})"] = tags[names.TAG_TRAINVAL_FINGERPRINT]
            for where, fingerprint in expected.items():
                if fingerprint != contract_fp:
                    problems.append(f"contract mismatch: the winner's checkpoint was trained on train/val split "
                                    f"{str(contract_fp)[:12]}, {where} used {str(fingerprint)[:12]}")
            hashes = download_json(tracking_uri, tested_run, f"{names.ARTIFACT_CHECKPOINT}/hashes.json")
            if hashes is not None:
                # Same formula as scolio_core.training.checkpoint.checkpoint_hash, which the lockbox records.
                digest = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
                contract_info["checkpoint_hash"] = digest
                for entry in opened:
                    members = entry.get("members")
                    if isinstance(members, dict):  # a seed ensemble: the winner's checkpoint is one member
                        if digest not in members.values():
                            problems.append(f"test attempt {entry['attempt']} evaluated an ensemble whose members "
                                            f"do not include the winner's logged checkpoint {digest[:12]}")
                        problems += ensemble_problems(tracking_uri, record, confirmed, members, entry["attempt"])
                    elif entry.get("checkpoint_hash") and entry["checkpoint_hash"] != digest:
                        problems.append(f"test attempt {entry['attempt']} evaluated checkpoint "
                                        f"{entry['checkpoint_hash'][:12]}, not the winner's logged checkpoint "
                                        f"{digest[:12]}")
    audit = {
        "sweep": record.name, "parent_run_id": record.parent.info.run_id, "selection_split": selection_split,
        "selection_metric": metric, "mode": mode, "trials": len(record.trials),
        "selected_trial": winner.trial_id if winner else tags.get(names.TAG_SELECTED_TRIAL),
        "selected_run_id": winner.run_id if winner else tags.get(names.TAG_SELECTED_RUN_ID),
        "winner_value": _finite(winner_value), "best_value": _finite(best_value), "best_run_ids": best_runs,
        "winner_is_best_by_val": winner_is_best, "test_evaluations": evaluations, "reopened_attempts": reopened,
        "ledger": [{k: e.get(k) for k in ("attempt", "state", "reopened", "time", "checkpoint_hash",
                                          "split_fingerprint", "trainval_fingerprint", "contract_overrides", "look")}
                   for e in entries],
        "study": study, "table": table, "table_seeds": tags.get(names.TAG_TABLE_SEEDS), "tested_parent": tested_parent,
        "own_looks": [look["look"] for look in own], "test_ids": test_ids,
        "foreign_looks": [{**{k: look.get(k) for k in ("look", "study", "entry_point", "time", "checkpoint_hash",
                                                        "reopened", "modality", "kind", "ledger_override", "state")},
                           "touched": n, "when": when}
                          for when, found in (("before", before), ("after", after)) for look, n in found],
        "tampering": view["tampering"],
        "test_set": tags.get(names.TAG_TEST_SET),
        "test_set_looks": [{k: look.get(k) for k in ("look", "state", "study", "entry_point", "time", "checkpoint_hash",
                                                      "reopened", "seen_before", "input", "model", "n_test")}
                           for look in looks],
        "split_fingerprint": split_fp, "trainval_fingerprint": tags.get(names.TAG_TRAINVAL_FINGERPRINT),
        "contract": contract_info, "problems": problems, "warnings": warnings, "clean": not problems,
        "confirmation": _confirmation_audit(confirmed),
        "answer": answer_audit(record),  # tracking/answer_view.py
    }
    audit["verdict"] = format_audit(audit)
    return audit


def confirmation_problems(record: SweepRecord, confirmed: dict) -> list[str]:
    """Check a confirmed selection against the runs themselves: the candidates are the search's top distinct
    configurations by val, each has a run per seed, the chosen one has the best mean of those runs' best vals
    (a tie goes to the better search rank), and the winner is its first seed's run (the declared rule)."""
    metric, mode = record.metric, record.mode
    sign = 1.0 if mode == "max" else -1.0
    problems: list[str] = []
    rows = confirmed.get("candidates") or []
    search = {t.trial_id: t for t in record.trials}
    candidates = [row["search_trial"] for row in rows]
    unknown = [c for c in candidates if c not in search]
    if unknown or not rows:
        return [f"the confirmation names search trial(s) {unknown or 'none'} that are not trials of this sweep"]
    lowest = min(sign * search[c].best(metric, mode)[1] for c in candidates)
    taken = {config_key(search[c], record.searched) for c in candidates}
    for trial in record.trials:
        score = sign * trial.best(metric, mode)[1]
        if trial.trial_id not in candidates and config_key(trial, record.searched) not in taken \
                and score > lowest + _TIE:
            problems.append(f"search trial {trial.trial_id} ({metric} {sign * score:.4f}) outranks a confirmed "
                            "candidate but was not confirmed")
    runs: dict[str, dict[int, Trial]] = {c: {} for c in candidates}
    for trial in record.confirmations:
        candidate = trial.run.data.tags.get(names.TAG_CONFIRM_CANDIDATE)
        if candidate in runs:
            runs[candidate][int(trial.params.get("train.seed", -1))] = trial
    seeds = [int(s) for s in confirmed.get("seeds", [])]
    # A race (scolio_sweep/search/racing.py) drops a candidate after round k: it has the first k seeds only and
    # cannot be chosen. Whether the drop's paired test was right is not re-checked here (it needs every
    # model's val predictions: answer/answer.json holds them).
    dropped = {row["search_trial"]: row.get("dropped_after") for row in rows if row.get("dropped_after")}
    means = {}
    for rank, candidate in enumerate(candidates):
        expected = seeds[: int(dropped[candidate])] if candidate in dropped else seeds
        if sorted(runs[candidate]) != expected:
            problems.append(f"candidate {candidate} has confirmation runs for seeds {sorted(runs[candidate])}, "
                            f"not {expected}")
            continue
        if candidate not in dropped:
            means[candidate] = (sum(t.best(metric, mode)[1] for t in runs[candidate].values()) / len(seeds), rank)
    if confirmed.get("chosen") in dropped:
        problems.append(f"the confirmation chose {confirmed.get('chosen')}, which its race had dropped")
    if len(means) == len(candidates) - len(dropped) and means:
        best = min(means, key=lambda c: (-sign * means[c][0], means[c][1]))
        chosen = confirmed.get("chosen")
        if chosen != best and abs(means[best][0] - means.get(chosen, (math.nan,))[0]) > _TIE:
            problems.append(f"the confirmation chose {chosen}, but candidate {best} has the best mean {metric} "
                            f"over its confirmation runs ({means[best][0]:.4f})")
        tested = runs.get(chosen, {}).get(seeds[0]) if seeds else None
        winner = record.winner()
        if tested is None or winner is None or winner.run_id != tested.run_id:
            problems.append(f"the selected run is not the chosen configuration's first confirmation seed (the "
                            f"declared rule): selected {winner.run_id if winner else None}, rule names "
                            f"{tested.run_id if tested else None}")
    return problems


def ensemble_problems(tracking_uri: str, record: SweepRecord, confirmed: dict | None, members: dict,
                      attempt: Any) -> list[str]:
    """An ensemble look must have tested exactly the chosen configuration's confirmation runs: their logged
    checkpoints' hashes are the members'."""
    chosen = (confirmed or {}).get("chosen")
    runs = [t for t in record.confirmations if t.run.data.tags.get(names.TAG_CONFIRM_CANDIDATE) == chosen]
    if not chosen or not runs:
        return [f"test attempt {attempt} evaluated an ensemble, but the sweep records no confirmation runs of a "
                "chosen candidate to compare its members with"]
    logged = set()
    for trial in runs:
        hashes = download_json(tracking_uri, trial.run_id, f"{names.ARTIFACT_CHECKPOINT}/hashes.json")
        if hashes is not None:
            logged.add(hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest())
    if logged != set(members.values()):
        return [f"test attempt {attempt} evaluated ensemble members {sorted(h[:12] for h in members.values())}, not "
                f"the chosen candidate's confirmation checkpoints {sorted(h[:12] for h in logged)}"]
    return []


def _parent_log(tracking_uri: str, run_id: str):
    from scolio_core.tracking.ledger import ParentRunLog

    return ParentRunLog(tracking_uri, run_id)


def _selected_run(tracking_uri: str, parent_run_id: str) -> str | None:
    from scolio_core.tracking.store import open_client

    return open_client(tracking_uri).get_run(parent_run_id).data.tags.get(names.TAG_SELECTED_RUN_ID) or None


def study_looks(tracking_uri: str, study: str, family: str, key: str | None, parents: set[str],
                entries: list[dict]) -> dict:
    """The ledger as one study sees it.

    own: the study's test looks; test_ids: how many ids they scored; before / after: (look, how many of the
    study's test ids it touched) for every look by another family (any entry point, checkpoint, modality or
    key) that scored some of them, before the study's first look or after it; key_looks: every look at the
    study's exact test-set key; tampering: what the hash chain, the looks the study's parent runs were told of
    (`parents`: names.TAG_LOCKBOX_SEEN) and the parent's own look entries (`entries`) say was changed."""
    from scolio_core.evaluation.looks import family_of, ids_of, kind_of
    from scolio_core.tracking.ledger import MlflowLedger

    ledger = MlflowLedger(tracking_uri)
    every = ledger.all_looks()
    tampering = ledger.integrity(every)
    by_number = {int(look["look"]): look for look in every if look.get("look_hash")}
    own = [look for look in every if look.get("study") == study and kind_of(look) == names.LOOK_KIND_TEST]
    if not own and key:  # older records: the study's looks are those at its key
        own = [look for look in every if look.get("key") == key and look.get("study") == study]
    ids: set[str] = set()
    for look in own:
        scored = ids_of(look)
        if scored is not None:
            ids |= scored
    test_ids = len(ids) or max([int(look.get("n_test") or 0) for look in own], default=0)
    first = min((int(look["look"]) for look in own), default=None)
    before, after = [], []
    own_keys = {look.get("key") for look in own}
    own_datasets = {look.get("dataset") for look in own} - {None}
    for look in every:
        if look in own or look.get("study") == study or family_of(look) == family:
            continue
        if own_datasets and look.get("dataset") and look["dataset"] not in own_datasets:
            continue  # another synthetic stand-in: the same id names, other sequences
        scored = ids_of(look)
        if scored is not None and ids:
            count = len(scored & ids)
        else:  # a look recorded without its ids, or a study whose looks hold none: by the test-set key
            count = test_ids if look.get("key") in own_keys else 0
        if count and first is not None:
            (before if int(look["look"]) < first else after).append((look, count))
    for run_id in sorted(p for p in parents if p):
        for number, digest in sorted(_parent_log(tracking_uri, run_id).seen().items()):
            found = by_number.get(number)
            if found is None:
                tampering.append(f"look {number}, which parent run {run_id} recorded as touching this study's test "
                                 "ids, is missing from the ledger (deleted and purged, or renamed out of it)")
            elif found.get("look_hash") != digest:
                tampering.append(f"look {number} is not the look parent run {run_id} recorded (its hash changed)")
    for entry in entries:
        if entry.get("state") != "opened" or not entry.get("look_hash"):
            continue  # entries written before looks were chained
        found = by_number.get(int(entry.get("look", 0)))
        if found is None:
            continue  # reported above: the parent was told of it
        changed = [k for k in ("claim", "study", "checkpoint_hash", "split_fingerprint", "trainval_fingerprint",
                               "partition", "reopened") if found.get(k) != entry.get(k)]
        if changed or found.get("look_hash") != entry.get("look_hash"):
            tampering.append(f"the parent run's record of look {entry.get('look')} (attempt {entry.get('attempt')}) "
                             f"differs from the ledger's ({', '.join(changed) or 'look_hash'})")
    key_looks = [look for look in every if key and look.get("key") == key]
    return {"own": own, "before": before, "after": after, "test_ids": test_ids, "tampering": tampering,
            "key_looks": key_looks}


def _look_detail(look: dict) -> str:
    parts = [f"{look['modality']} model"] if look.get("modality") else []
    if look.get("ledger_override"):
        parts.append(f"also recorded in {look['ledger_override']}")
    return f" ({'; '.join(parts)})" if parts else ""


def _look_line(look: dict) -> str:
    return (f"look {look.get('look')} by {look.get('entry_point', '?')} {look.get('study', '?')!r} at "
            f"{look.get('time', '?')}, checkpoint {str(look.get('checkpoint_hash'))[:12]}"
            + (", REOPENED" if look.get("reopened") else "") + ("" if look.get("state") == "completed"
                                                                 else ", never completed"))


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _confirmation_audit(confirmed: dict | None) -> dict | None:
    """What the audit reports of a confirmed selection: the chosen candidate, its mean and the seeds."""
    if confirmed is None:
        return None
    rows = {row.get("search_trial"): row for row in confirmed.get("candidates") or []}
    chosen = rows.get(confirmed.get("chosen"), {})
    return {"chosen_search_trial": confirmed.get("chosen"), "chosen_label": chosen.get("label"),
            "chosen_mean": chosen.get("mean"), "seeds": confirmed.get("seeds"), "candidates": len(rows),
            "rule": confirmed.get("rule", "fixed"), "tested": confirmed.get("tested", "first-seed"),
            "dropped": sum(bool(row.get("dropped_after")) for row in rows.values())}


def format_audit(audit: dict) -> str:
    """A short plain-language verdict."""
    n = audit["test_evaluations"]
    confirmation = audit.get("confirmation")
    lines = [f"Audit of sweep {audit['sweep']!r} ({audit['trials']} trials, parent run {audit['parent_run_id']}):"]
    if audit.get("table") is not None:
        lines.append(f"- table partition of {audit['table']!r}: seeds {audit.get('table_seeds') or '?'}, each model "
                     "its best checkpoint on val; the partition's one look tests them all (sibling partitions are "
                     "one study with it)")
    elif confirmation:
        ensemble = confirmation.get("tested") == "ensemble"
        raced = (f" (raced: {confirmation['dropped']} dropped by the paired test)"
                 if confirmation.get("rule") == "racing" else "")
        lines.append(f"- winner: trial {audit['selected_trial']} (run {audit['selected_run_id']}, "
                     f"{audit['selection_metric']} {_number(audit['winner_value'])}), the first confirmation seed of "
                     f"{confirmation['chosen_label']} (search trial {confirmation['chosen_search_trial']}), chosen "
                     f"among the top {confirmation['candidates']}{raced} by its mean over seeds {confirmation['seeds']}: "
                     f"{_number(confirmation['chosen_mean'])}; best search trial {_number(audit['best_value'])}"
                     + ("; tested as the seed ensemble of its re-trainings (their checkpoints are the look's members)"
                        if ensemble else ""))
    else:
        lines.append(f"- winner: trial {audit['selected_trial']} (run {audit['selected_run_id']}), selected on "
                     f"{audit['selection_split'] or 'an unrecorded split'} by {audit['selection_metric']} "
                     f"({audit['mode']}): {_number(audit['winner_value'])}; "
                     f"best of all trials {_number(audit['best_value'])}")
    lines.extend(answer_audit_lines(audit.get("answer")))
    lines.append(f"- test set evaluated {n} time(s)" + (" (one-shot)" if n == 1 else "")
                 + (f"; reopened attempts {audit['reopened_attempts']}" if audit["reopened_attempts"] else ""))
    lines.append(f"- split fingerprint {audit['split_fingerprint'] or 'not recorded'}; train/val fingerprint "
                 f"{audit['trainval_fingerprint'] or 'not recorded'}")
    if audit.get("test_set_looks"):
        lines.append(f"- test set {str(audit['test_set'])[:16]}: {len(audit['test_set_looks'])} look(s) by any "
                     "entry point in this tracking store:")
        lines.extend(f"    {_look_line(look)}" for look in audit["test_set_looks"])
    contract = audit["contract"]
    if contract.get("found"):
        lines.append(f"- winner's contract: train/val fingerprint {contract['trainval_fingerprint']}")
    for warning in audit["warnings"]:
        lines.append(f"- note: {warning}")
    if audit["problems"]:
        lines.append(f"VERDICT: {len(audit['problems'])} PROBLEM(S) FOUND")
        lines.extend(f"  ! {p}" for p in audit["problems"])
    elif audit.get("table") is not None:
        lines.append("VERDICT: CLEAN: every seed's model was chosen on val, and the partition's test ids were looked "
                     "at once, for all its seeds together, by no one else.")
    elif confirmation:
        lines.append("VERDICT: CLEAN: the winner was chosen on val by the confirmation's mean over new seeds, what "
                     "was tested is what the declared rule names"
                     + (" (the chosen configuration's seed ensemble)" if confirmation.get("tested") == "ensemble"
                        else " (its first seed)")
                     + ", and test was looked at no more than once with the data its contract names.")
    else:
        lines.append("VERDICT: CLEAN: the winner was chosen on val, it is the best trial by val, and test was "
                     "looked at no more than once with the data its contract names.")
    return "\n".join(lines)


