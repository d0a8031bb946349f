"""Rebuild a sweep's results/ folder and audit its selection, from the MLflow record alone.

    build_report("sqlite:///mlflow.db", "repr-sweep", "results/repr-sweep")   # scolio report
    audit_sweep("sqlite:///mlflow.db", "repr-sweep")                          # scolio audit

Everything here only READS MLflow (see "What MLflow holds" in docs/design.md): the sweep's parent run
(selection tags, lockbox ledger tags, one-shot `test/*` metrics) and its child runs (one per trial, with
per-evaluation `val/*` histories and a `checkpoint/` artifact). Because nothing comes from the Ray
results folder, the results can be regenerated on any machine that can reach the tracking store.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import json
import math
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from scolio_core import CLASS_NAMES
from scolio_core.errors import ConfigError, DataError, ScolioError
from scolio_core.tracking import schema

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = schema.DEFAULT_EXPERIMENT
VAL_METRIC = schema.METRIC_VAL_MACRO_F1
# Prefixes under which a parent run may name its search space (`search.input.sigma`).
SEARCH_PREFIXES = schema.SEARCH_PARAM_PREFIXES
# Test metrics shown with their 95 % interval in summary.md (scolio_core.training.metrics.CI_METRICS).
TEST_CI_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "sensitivity/positive",
                   "specificity/negative", "refer/sensitivity", "refer/specificity")
if TYPE_CHECKING:  # mlflow is imported when a store is opened, so `scolio audit --help` stays fast
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

INT_COLUMNS = ("rank", "best_step", "iterations", "evaluations")
_TIE = 1e-9  # scores closer than this count as equal when checking the selection


@dataclass
class Trial:
    """One child run, reduced to what the leaderboard and the audit need."""

    run: Run
    params: dict[str, Any]  # parsed values of every logged param
    history: dict[str, dict[int, float]]  # metric -> step -> value

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def trial_id(self) -> str:
        return self.run.data.tags.get(schema.TAG_TRIAL_ID, self.run.info.run_name or self.run_id[:8])

    @property
    def status(self) -> str:
        status = self.run.info.status
        if status == "KILLED":
            stopped = self.run.data.tags.get(schema.TAG_STOPPED_BY)
            if stopped == schema.STOPPED_BY_SCHEDULER:
                return "KILLED by early stopping"
            return f"KILLED ({stopped or 'reason not recorded'})"
        return status

    def best(self, metric: str = VAL_METRIC, mode: str = "max") -> tuple[int | None, float]:
        """(step, value) of the best value over the history; earliest step on ties; (None, nan) if none."""
        values = self.history.get(metric, {})
        if not values:
            return None, math.nan
        sign = 1.0 if mode == "max" else -1.0
        step = max(sorted(values), key=lambda s: sign * values[s])
        return step, values[step]


@dataclass
class SweepRecord:
    """A sweep as MLflow holds it."""

    name: str
    experiment_id: str
    parent: Run
    trials: list[Trial]  # the search's trials
    searched: list[str]
    ledger: list[dict]
    confirmations: list[Trial] = field(default_factory=list)  # re-trainings of top candidates (sweeps/confirm.py)

    @property
    def tags(self) -> dict[str, str]:
        return self.parent.data.tags

    @property
    def metric(self) -> str:
        return self.tags.get(schema.TAG_METRIC, schema.DEFAULT_METRIC)

    @property
    def mode(self) -> str:
        return self.tags.get(schema.TAG_MODE, schema.DEFAULT_MODE)

    def winner(self) -> Trial | None:
        run_id, trial_id = self.tags.get(schema.TAG_SELECTED_RUN_ID), self.tags.get(schema.TAG_SELECTED_TRIAL)
        for trial in [*self.trials, *self.confirmations]:
            if (run_id and trial.run_id == run_id) or (not run_id and trial_id and trial.trial_id == trial_id):
                return trial
        return None


@dataclass
class ReportPaths:
    out_dir: Path
    leaderboard_csv: Path
    leaderboard_md: Path
    summary_md: Path
    plots: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was skipped and why
    leaderboard: pd.DataFrame | None = None

    def files(self) -> list[Path]:
        return [self.leaderboard_csv, self.leaderboard_md, self.summary_md, *self.plots.values()]


# ------------------------------------------------------------------------------------------- reading
def _parse_param(text: str) -> Any:
    """MLflow params are strings; recover numbers, booleans and tuples (plain words stay strings)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def open_client(tracking_uri: str) -> MlflowClient:
    """A client for `tracking_uri`; a missing sqlite file is an error (MLflow would create an empty one)."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri[len("sqlite:///"):])
        if not path.is_file():
            raise ConfigError(f"--tracking-uri {tracking_uri}: no MLflow database at {path.resolve()}")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """step -> value; a step logged twice (a replay after restore) keeps its latest value."""
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return {int(m.step): float(m.value) for m in points}


def _searched_params(parent: Run, trials: list[Trial]) -> list[str]:
    """Config keys of the parent's `search.<key>` params; else the params that differ across trials."""
    known = sorted({k for t in trials for k in t.params}, key=len, reverse=True)
    searched: list[str] = []
    for name in parent.data.params:
        prefix = next((p for p in SEARCH_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            continue
        key = name[len(prefix):]
        # `search.input.sigma.uniform` (a flattened distribution) names the config key input.sigma.
        match = next((k for k in known if key == k or key.startswith(k + ".")), key)
        if match not in searched:
            searched.append(match)
    if searched:
        return sorted(searched)
    varying = [k for k in known if len({repr(t.params.get(k)) for t in trials}) > 1]
    return sorted(varying)


def _ledger_entries(tracking_uri: str, parent_id: str) -> list[dict]:
    from scolio_core.tracking.ledger import ParentRunLog

    return ParentRunLog(tracking_uri, parent_id).entries()


def test_set_looks(tracking_uri: str, record: SweepRecord) -> list[dict]:
    """Every look at the sweep's test set, by any study or entry point, in ledger order."""
    from scolio_core.tracking.ledger import MlflowLedger

    key = record.tags.get(schema.TAG_TEST_SET) or next(
        (e.get("test_set") for e in record.ledger if e.get("test_set")), None)
    return MlflowLedger(tracking_uri).looks(key) if key else []


test_set_looks.__test__ = False  # not a pytest test


def load_sweep(tracking_uri: str, sweep_name: str, experiment: str = DEFAULT_EXPERIMENT) -> SweepRecord:
    """Read a sweep's parent run, child runs (with metric histories) and lockbox ledger."""
    client = open_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise ConfigError(f"no MLflow experiment {experiment!r} at {tracking_uri} (found: {names}); "
                          "pass --experiment")
    parent = schema.find_parent_run(client, found.experiment_id, sweep_name)
    if parent is None:
        sweeps = schema.sweep_names(client, found.experiment_id)
        raise ConfigError(f"no sweep {sweep_name!r} in experiment {experiment!r} at {tracking_uri} "
                          f"(sweeps there: {', '.join(sweeps) or 'none'})")
    children = schema.find_child_runs(client, found.experiment_id, parent.info.run_id)
    trials, confirmations = [], []
    for run in children:
        keys = [k for k in (VAL_METRIC, schema.METRIC_VAL_ACCURACY, schema.METRIC_ITERATION)
                if k in run.data.metrics]
        metric = parent.data.tags.get(schema.TAG_METRIC, schema.DEFAULT_METRIC)
        if metric in run.data.metrics and metric not in keys:
            keys.append(metric)
        confirmation = run.data.tags.get(schema.TAG_ROLE) == schema.ROLE_CONFIRMATION
        (confirmations if confirmation else trials).append(
            Trial(run, {k: _parse_param(v) for k, v in run.data.params.items()},
                  {k: _history(client, run.info.run_id, k) for k in keys}))
    searched = _searched_params(parent, trials)
    return SweepRecord(sweep_name, found.experiment_id, parent, trials, searched,
                       _ledger_entries(tracking_uri, parent.info.run_id), confirmations)


def _ci(metrics: dict[str, float], name: str) -> tuple[float, float] | None:
    for low, high in ((f"test/{name}_ci_low", f"test/{name}_ci_high"),
                      (f"test/{name}/ci_low", f"test/{name}/ci_high")):
        if low in metrics and high in metrics:
            return metrics[low], metrics[high]
    return None


def _confusion(metrics: dict[str, float], entry: dict | None) -> list[list[float]] | None:
    if entry and entry.get("confusion_matrix"):
        return entry["confusion_matrix"]
    for base in ("test/confusion", "test/confusion_matrix"):
        keys = [[f"{base}/{t}_as_{p}" for p in CLASS_NAMES] for t in CLASS_NAMES]
        if all(k in metrics for row in keys for k in row):
            return [[metrics[k] for k in row] for row in keys]
    return None


def winner_test_result(record: SweepRecord) -> dict | None:
    """The winner's test evaluation: metrics (latest completed ledger entry, else the parent's `test/*`
    metrics), whether it was a reopened look, its confusion matrix; None when test was never evaluated."""
    completed = [e for e in record.ledger if e.get("state") == "completed"]
    metrics = {k: v for k, v in record.parent.data.metrics.items() if k.startswith(schema.TEST_METRIC_PREFIX)}
    entry = completed[-1] if completed else None
    if entry:
        metrics.update({k: float(v) for k, v in entry.get("metrics", {}).items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
    if not metrics:
        return None
    reopened = (record.tags.get(schema.TAG_TEST_REOPENED, "").lower() == "true"
                or metrics.get(schema.METRIC_TEST_REOPENED, 0) > 0.5
                or bool(entry and entry.get("reopened")))
    return {"metrics": metrics, "reopened": reopened, "attempt": entry["attempt"] if entry else None,
            "label": "REOPENED test" if reopened else "one-shot test",
            "confusion_matrix": _confusion(metrics, entry)}


# --------------------------------------------------------------------------------------- leaderboard
def _val_row(trial: Trial, searched: list[str], split: str) -> dict[str, Any]:
    """A child run's leaderboard row: its searched values and its best val evaluation."""
    step, best = trial.best(VAL_METRIC, "max")
    iterations = trial.history.get(schema.METRIC_ITERATION, {})
    return {"trial_id": trial.trial_id, "run_id": trial.run_id, "split": split, "status": trial.status,
            **{name: trial.params.get(name) for name in searched},
            "macro_f1": best, "accuracy": trial.history.get(schema.METRIC_VAL_ACCURACY, {}).get(step, math.nan),
            "best_step": step, "iterations": max(iterations.values()) if iterations else None,
            "evaluations": len(trial.history.get(VAL_METRIC, {}))}


def _config_key(trial: Trial, searched: list[str]) -> str:
    """A trial's searched values as one comparable string (ties and duplicates are decided on it)."""
    return repr([trial.params.get(name) for name in searched])


def leaderboard(record: SweepRecord) -> pd.DataFrame:
    """One row per trial sorted by best val macro-F1, then one test row for the winner (if tested)."""
    rows = [_val_row(trial, record.searched, "val") for trial in record.trials]
    frame = pd.DataFrame(rows, columns=["trial_id", "run_id", "split", "status", *record.searched, "macro_f1",
                                        "accuracy", "best_step", "iterations", "evaluations"])
    result, winner = winner_test_result(record), record.winner()
    # Among tied trials the selected one is listed first, so rank 1 is the winner whenever it can be; other ties
    # go by the earlier best evaluation, then by the configuration itself (not by run ids or start times, which
    # differ between re-runs of the same sweep).
    frame["_selected"] = frame["run_id"] == (winner.run_id if winner else None)
    frame["_config"] = [_config_key(trial, record.searched) for trial in record.trials]
    frame = frame.sort_values(["macro_f1", "_selected", "best_step", "_config"], ascending=[False, False, True, True],
                              na_position="last", kind="stable")
    frame = frame.drop(columns=["_selected", "_config"])
    frame.insert(0, "rank", range(1, len(frame) + 1))
    # Unranked: they re-train ranked configurations, they do not compete.
    confirmations = [{"rank": None, **_val_row(trial, record.searched,
                                               f"val, confirmation seed {trial.params.get('train.seed')}")}
                     for trial in record.confirmations]
    if confirmations:
        ordered = pd.DataFrame(confirmations).sort_values(["split", "macro_f1"], ascending=[True, False],
                                                          kind="stable")
        frame = pd.concat([frame, ordered], ignore_index=True)
    if result is not None:
        metrics = result["metrics"]
        row = {"rank": None, "split": result["label"],
               "trial_id": winner.trial_id if winner else record.tags.get(schema.TAG_SELECTED_TRIAL, "not recorded"),
               "run_id": winner.run_id if winner else record.tags.get(schema.TAG_SELECTED_RUN_ID, ""),
               "status": winner.status if winner else "",
               **{name: winner.params.get(name) if winner else None for name in record.searched},
               "macro_f1": metrics.get("test/macro_f1", math.nan), "accuracy": metrics.get("test/accuracy", math.nan)}
        for name in ("macro_f1", "accuracy"):
            low, high = _ci(metrics, name) or (math.nan, math.nan)
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = low, high
        frame = pd.concat([frame, pd.DataFrame([row])], ignore_index=True)
    for name in INT_COLUMNS:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").round().astype("Int64")
    return frame.reset_index(drop=True)


def _cell(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' to_markdown would need the optional `tabulate` package)."""
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


# -------------------------------------------------------------------------------------------- audit
def _download_json(tracking_uri: str, run_id: str, artifact: str) -> dict | None:
    """An artifact of a run parsed as JSON, or None when the run has no such artifact."""
    import mlflow.artifacts

    client = open_client(tracking_uri)
    folder = artifact.rpartition("/")[0]
    if artifact not in {f.path for f in client.list_artifacts(run_id, folder or None)}:
        return None
    # MLflow draws a progress bar on stderr for every download, even of one small JSON file; it would bury the
    # audit's output. Its only switch is an environment variable, so the bar is swallowed here instead.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=tmp,
                                                    tracking_uri=tracking_uri)
        text = Path(local).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"run {run_id}: artifact {artifact} is not valid JSON ({exc})") from None


def audit_sweep(tracking_uri: str, sweep_name: str, experiment: str = DEFAULT_EXPERIMENT,
                record: SweepRecord | None = None) -> dict:
    """What the record says about selection and test use; `problems` non-empty means not clean."""
    record = record or load_sweep(tracking_uri, sweep_name, experiment)
    tags, problems, warnings = record.tags, [], []
    metric, mode = record.metric, record.mode
    selection_split = tags.get(schema.TAG_SELECTION_SPLIT)
    if selection_split != "val":
        problems.append(f"the winner was selected on {selection_split!r}, not 'val'" if selection_split
                        else f"the selection split ({schema.TAG_SELECTION_SPLIT}) is not recorded")

    winner = record.winner()
    scores = {t.run_id: t.best(metric, mode)[1] for t in record.trials}
    scored = {k: v for k, v in scores.items() if not math.isnan(v)}
    best_value = (max if mode == "max" else min)(scored.values()) if scored else math.nan
    best_runs = [k for k, v in scored.items() if abs(v - best_value) <= _TIE]
    winner_value = scores.get(winner.run_id, math.nan) if winner else math.nan
    winner_is_best = bool(winner and winner.run_id in best_runs)
    confirmed = confirmation_record(record)
    if winner is None:
        problems.append(f"no winner recorded ({schema.TAG_SELECTED_RUN_ID} / {schema.TAG_SELECTED_TRIAL} "
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

    opened = [e for e in record.ledger if e.get("state") == "opened"]
    completed_attempts = {e.get("attempt") for e in record.ledger if e.get("state") == "completed"}
    evaluations = max(evaluation_count(record.ledger), int(tags.get(schema.TAG_LOCKBOX_EVALUATIONS, 0) or 0))
    # The test set's own ledger sees every entry point: this study's looks, looks at its checkpoints by
    # others (e.g. `scolio eval --reopen` on the winner), and other studies' looks before its first one.
    looks = test_set_looks(tracking_uri, record)
    study = tags.get(schema.TAG_STUDY) or record.name  # a finetune stage belongs to its baseline's study
    own = [look for look in looks if look.get("study") == study]
    own_hashes = {look.get("checkpoint_hash") for look in own}
    first_own = min((look["look"] for look in own), default=None)
    relooks = [look for look in looks if look.get("study") != study and first_own is not None
               and look["look"] > first_own and look.get("checkpoint_hash") in own_hashes]
    evaluations = max(evaluations, len(own) + len(relooks))
    seen_before = [look for look in looks if look.get("study") != study
                   and (first_own is None or look["look"] < first_own)]
    if own and seen_before:
        problems.append(f"the test set had been looked at {len(seen_before)} time(s) before this study's first "
                        "look (" + "; ".join(_look_line(look) for look in seen_before) + "): not a first look")
    for look in relooks:
        problems.append(f"look {look['look']} evaluated this study's checkpoint again: {_look_line(look)}")
    reopened = sorted(e["attempt"] for e in opened if e.get("reopened"))
    if evaluations > 1:
        problems.append(f"the test set was evaluated {evaluations} times"
                        + (f" (reopened attempt(s): {', '.join(map(str, reopened))})" if reopened else ""))
    for entry in opened:
        if entry.get("attempt") not in completed_attempts:
            warnings.append(f"test attempt {entry.get('attempt')} was opened but never completed "
                            "(its results may have been seen)")
    if evaluations == 0:
        if any(k.startswith(schema.TEST_METRIC_PREFIX) for k in record.parent.data.metrics):
            problems.append("test metrics are recorded on the parent run without any lockbox ledger entry")
        else:
            warnings.append("the test set has not been evaluated yet")

    split_fp = tags.get(schema.TAG_SPLIT_FINGERPRINT)
    for entry in opened:
        if split_fp and entry.get("split_fingerprint") != split_fp:
            problems.append(f"test attempt {entry['attempt']} ran on split {str(entry.get('split_fingerprint'))[:12]}, "
                            f"the sweep's split is {split_fp[:12]}")
        if entry.get("contract_overrides"):
            problems.append(f"test attempt {entry['attempt']} overrode the checkpoint contract: "
                            + "; ".join(map(str, entry["contract_overrides"])))

    contract_info: dict[str, Any] = {"found": False}
    if winner is not None:
        contract = _download_json(tracking_uri, winner.run_id, f"{schema.ARTIFACT_CHECKPOINT}/contract.json")
        if contract is None:
            (problems if evaluations else warnings).append(
                f"the winner's run {winner.run_id} has no checkpoint/contract.json artifact: the tested data "
                "cannot be checked against its contract")
        else:
            contract_fp = (contract.get("split") or {}).get("fingerprint")
            contract_info = {"found": True, "trainval_fingerprint": contract_fp,
                             "partition": (contract.get("split") or {}).get("partition")}
            expected = {f"test attempt {e['attempt']}": e.get("trainval_fingerprint") for e in opened}
            if tags.get(schema.TAG_TRAINVAL_FINGERPRINT):
                expected[f"the sweep ({schema.TAG_TRAINVAL_FINGERPRINT})"] = tags[schema.TAG_TRAINVAL_FINGERPRINT]
            for where, fingerprint in expected.items():
                if fingerprint != contract_fp:
                    problems.append(f"contract mismatch: the winner's checkpoint was trained on train/val split "
                                    f"{str(contract_fp)[:12]}, {where} used {str(fingerprint)[:12]}")
            hashes = _download_json(tracking_uri, winner.run_id, f"{schema.ARTIFACT_CHECKPOINT}/hashes.json")
            if hashes is not None:
                # Same formula as scolio_core.training.checkpoint.checkpoint_hash, which the lockbox records.
                digest = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
                contract_info["checkpoint_hash"] = digest
                for entry in opened:
                    if entry.get("checkpoint_hash") and entry["checkpoint_hash"] != digest:
                        problems.append(f"test attempt {entry['attempt']} evaluated checkpoint "
                                        f"{entry['checkpoint_hash'][:12]}, not the winner's logged checkpoint "
                                        f"{digest[:12]}")
    audit = {
        "sweep": record.name, "parent_run_id": record.parent.info.run_id, "selection_split": selection_split,
        "selection_metric": metric, "mode": mode, "trials": len(record.trials),
        "selected_trial": winner.trial_id if winner else tags.get(schema.TAG_SELECTED_TRIAL),
        "selected_run_id": winner.run_id if winner else tags.get(schema.TAG_SELECTED_RUN_ID),
        "winner_value": _finite(winner_value), "best_value": _finite(best_value), "best_run_ids": best_runs,
        "winner_is_best_by_val": winner_is_best, "test_evaluations": evaluations, "reopened_attempts": reopened,
        "ledger": [{k: e.get(k) for k in ("attempt", "state", "reopened", "time", "checkpoint_hash",
                                          "split_fingerprint", "trainval_fingerprint", "contract_overrides")}
                   for e in record.ledger],
        "test_set": tags.get(schema.TAG_TEST_SET),
        "test_set_looks": [{k: look.get(k) for k in ("look", "state", "study", "entry_point", "time", "checkpoint_hash",
                                                      "reopened", "seen_before", "input", "model", "n_test")}
                           for look in looks],
        "split_fingerprint": split_fp, "trainval_fingerprint": tags.get(schema.TAG_TRAINVAL_FINGERPRINT),
        "contract": contract_info, "problems": problems, "warnings": warnings, "clean": not problems,
        "confirmation": _confirmation_audit(confirmed),
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
    taken = {_config_key(search[c], record.searched) for c in candidates}
    for trial in record.trials:
        score = sign * trial.best(metric, mode)[1]
        if trial.trial_id not in candidates and _config_key(trial, record.searched) not in taken \
                and score > lowest + _TIE:
            problems.append(f"search trial {trial.trial_id} ({metric} {sign * score:.4f}) outranks a confirmed "
                            "candidate but was not confirmed")
    runs: dict[str, dict[int, Trial]] = {c: {} for c in candidates}
    for trial in record.confirmations:
        candidate = trial.run.data.tags.get(schema.TAG_CONFIRM_CANDIDATE)
        if candidate in runs:
            runs[candidate][int(trial.params.get("train.seed", -1))] = trial
    seeds = [int(s) for s in confirmed.get("seeds", [])]
    means = {}
    for rank, candidate in enumerate(candidates):
        if sorted(runs[candidate]) != seeds:
            problems.append(f"candidate {candidate} has confirmation runs for seeds {sorted(runs[candidate])}, "
                            f"not {seeds}")
            continue
        means[candidate] = (sum(t.best(metric, mode)[1] for t in runs[candidate].values()) / len(seeds), rank)
    if len(means) == len(candidates):
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
            "chosen_mean": chosen.get("mean"), "seeds": confirmed.get("seeds"), "candidates": len(rows)}


def format_audit(audit: dict) -> str:
    """A short plain-language verdict."""
    n = audit["test_evaluations"]
    confirmation = audit.get("confirmation")
    lines = [f"Audit of sweep {audit['sweep']!r} ({audit['trials']} trials, parent run {audit['parent_run_id']}):"]
    if confirmation:
        lines.append(f"- winner: trial {audit['selected_trial']} (run {audit['selected_run_id']}, "
                     f"{audit['selection_metric']} {_number(audit['winner_value'])}), the first confirmation seed of "
                     f"{confirmation['chosen_label']} (search trial {confirmation['chosen_search_trial']}), chosen "
                     f"among the top {confirmation['candidates']} by its mean over seeds {confirmation['seeds']}: "
                     f"{_number(confirmation['chosen_mean'])}; best search trial {_number(audit['best_value'])}")
    else:
        lines.append(f"- winner: trial {audit['selected_trial']} (run {audit['selected_run_id']}), selected on "
                     f"{audit['selection_split'] or 'an unrecorded split'} by {audit['selection_metric']} "
                     f"({audit['mode']}): {_number(audit['winner_value'])}; "
                     f"best of all trials {_number(audit['best_value'])}")
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
    elif confirmation:
        lines.append("VERDICT: CLEAN: the winner was chosen on val by the confirmation's mean over new seeds, it is "
                     "the seed the declared rule names, and test was looked at no more than once with the data its "
                     "contract names.")
    else:
        lines.append("VERDICT: CLEAN: the winner was chosen on val, it is the best trial by val, and test was "
                     "looked at no more than once with the data its contract names.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- report
def _summary(record: SweepRecord, board: pd.DataFrame, audit_text: str) -> str:
    trials = board[board["split"] == "val"]
    counts = Counter(trials["status"])
    winner = record.winner()
    lines = [f"# Sweep {record.name}", "",
             f"- trials: {len(trials)} ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))})",
             f"- selection: {record.metric} ({record.mode}) on split "
             f"{record.tags.get(schema.TAG_SELECTION_SPLIT, 'not recorded')}",
             f"- profile: {record.tags.get(schema.TAG_PROFILE, 'not recorded')}; partition: "
             f"{record.tags.get(schema.TAG_PARTITION, 'not recorded')}",
             f"- searched: {', '.join(record.searched) or 'nothing recorded'}"]
    if schema.TAG_ORACLE_VAL_MACRO_F1 in record.tags:
        lines.append("- severity-oracle macro-F1 on the val ids (synthetic data; the reference a val number is "
                     f"compared with): {record.tags[schema.TAG_ORACLE_VAL_MACRO_F1]}")
    if schema.TAG_ORACLE_MACRO_F1 in record.tags:
        lines.append("- severity-oracle macro-F1 on the test ids (synthetic data; the reference a test number is "
                     f"compared with): {record.tags[schema.TAG_ORACLE_MACRO_F1]}")
    lines += ["", "## Winner", ""]
    if winner is None:
        lines.append("No winner recorded.")
    else:
        step, best = winner.best(VAL_METRIC)
        acc = winner.history.get(schema.METRIC_VAL_ACCURACY, {}).get(step, math.nan)
        lines.append(f"Trial {winner.trial_id} (run {winner.run_id}, {winner.status}): best val macro-F1 "
                     f"{best:.4f} at evaluation {step} (val accuracy {acc:.4f}).")
        lines += [f"- {name} = {winner.params.get(name)}" for name in record.searched]
    lines += _confirmation_summary(record)
    result = winner_test_result(record)
    lines += ["", "## Test", ""]
    if result is None:
        lines.append("Test not evaluated.")
    else:
        metrics = result["metrics"]
        lines.append(f"**{result['label']}** of the winner"
                     + (" (REOPENED: not a clean one-shot estimate)" if result["reopened"] else "")
                     + (f", n = {int(metrics['test/n'])}" if "test/n" in metrics else "") + ":")
        lines.append("")
        for name in TEST_CI_METRICS:
            if f"test/{name}" not in metrics:
                continue
            ci = _ci(metrics, name)
            lines.append(f"- {name}: {metrics[f'test/{name}']:.4f}"
                         + (f" (95 % CI {ci[0]:.4f} to {ci[1]:.4f})" if ci else ""))
    lines += ["", "## Audit", "", "```", audit_text, "```", ""]
    return "\n".join(lines)


def confirmation_record(record: SweepRecord) -> dict | None:
    """The parent's confirmation (sweeps/confirm.py) as recorded: candidates, seeds, chosen and tested trial."""
    text = record.tags.get(schema.TAG_CONFIRMATION)
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _confirmation_summary(record: SweepRecord) -> list[str]:
    confirmation = confirmation_record(record)
    if confirmation is None:
        return []
    metric = confirmation.get("metric", record.metric)
    lines = ["", "## Confirmation before selection", "",
             f"The top {len(confirmation['candidates'])} configurations by search val were trained again with "
             f"seeds {confirmation['seeds']} (same train and val ids, full budget). Selected: the best mean "
             f"over those seeds. Tested: {record.tags.get(schema.TAG_CONFIRM_RULE, 'rule not recorded')}.", "",
             f"| search rank | configuration | search {metric} | confirmed mean (95 % CI) | per seed | optimism |",
             "|---|---|---|---|---|---|"]
    for row in confirmation["candidates"]:
        interval = (f" ({row['ci_low']:.4f} to {row['ci_high']:.4f})" if row.get("ci_low") is not None else "")
        chosen = " **selected**" if row["search_trial"] == confirmation.get("chosen") else ""
        seeds = " / ".join(f"{v:.4f}" for _, v in sorted(row["seed_vals"].items(), key=lambda kv: int(kv[0])))
        lines.append(f"| {row['rank']}{chosen} | {row['label']} | {row['search_val']:.4f} | {row['mean']:.4f}"
                     f"{interval} | {seeds} | {row['optimism']:+.4f} |")
    optimism = record.parent.data.metrics.get(schema.confirmed_metric(metric, "optimism"))
    if optimism is not None:
        lines += ["", f"Search-time optimism: the search winner's val minus its own confirmed mean = "
                      f"{optimism:+.4f} (what the search's number overstates)."]
    return lines


def _input_config(params: dict[str, Any]):
    from scolio_core.config import ExperimentConfig, InputConfig

    try:
        return ExperimentConfig.from_dict({k: v for k, v in params.items() if k.startswith("input.")}).input
    except ScolioError:
        return InputConfig()


def preview_configs(record: SweepRecord, limit: int = 6) -> list[tuple[str, Any]]:
    """Skeleton settings worth showing: the winner's, each other searched representation, sigma extremes."""
    skeleton = [(t, _input_config(t.params)) for t in record.trials]
    skeleton = [(t, c) for t, c in skeleton if c.modality == "skeleton"]
    if not skeleton:
        return []
    winner = record.winner()
    base = next((c for t, c in skeleton if winner and t.run_id == winner.run_id), skeleton[0][1])
    chosen = [("winner" if winner and base == _input_config(winner.params) else "example", base)]
    for _, cfg in skeleton:
        if cfg.representation != base.representation:
            chosen.append(("also searched", replace(base, representation=cfg.representation)))
    sigmas = sorted({c.sigma for _, c in skeleton})
    for sigma, label in ((sigmas[0], "lowest sigma"), (sigmas[-1], "highest sigma")):
        chosen.append((label, replace(base, sigma=sigma)))
    unique: dict[tuple[str, float], tuple[str, Any]] = {}
    for label, cfg in chosen:
        unique.setdefault((cfg.representation, cfg.sigma), (label, cfg))
    return list(unique.values())[:limit]


def _preview(record: SweepRecord, tracking_uri: str, data_root: str | Path, path: Path) -> Path:
    """Previews drawn on one *training* sequence of the winner's contract (never a test id: only the
    lockbox reads test data, and `$SCOLIO_ACCESS_LOG` audits would flag any other read)."""
    from scolio_core.data.release import index_release, load_pose, resolve_modality_root
    from scolio_core.tracking.plots import skeleton_preview

    configs = preview_configs(record)
    if not configs:
        raise DataError("no trial used a skeleton representation")
    winner = record.winner()
    contract = (_download_json(tracking_uri, winner.run_id, f"{schema.ARTIFACT_CHECKPOINT}/contract.json")
                if winner else None)
    train_ids = set(((contract or {}).get("split") or {}).get("train_ids") or ())
    if not train_ids:
        raise DataError("the winner's checkpoint contract lists no training ids to draw a preview from")
    index = index_release(resolve_modality_root(data_root, "skeleton"))
    usable = sorted(train_ids & set(index))
    if not usable:
        raise DataError(f"{data_root}: none of the winner's training sequences are there")
    sequence = index[usable[0]]
    return skeleton_preview(load_pose(sequence.path, sequence.seq_id), configs, path)


def build_report(tracking_uri: str, sweep_name: str, out_dir: str | Path, experiment: str = DEFAULT_EXPERIMENT,
                 data_root: str | Path | None = None) -> ReportPaths:
    """Write leaderboard.csv/.md, summary.md and the plots for `sweep_name` into `out_dir`.

    Skeleton previews are drawn when pose data is found under `data_root` (default: the sweep's
    `scolio.data_root` tag, schema.TAG_DATA_ROOT); otherwise `ReportPaths.notes` says why they were skipped."""
    from scolio_core.tracking import plots

    record = load_sweep(tracking_uri, sweep_name, experiment)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    board = leaderboard(record)
    paths = ReportPaths(out, out / "leaderboard.csv", out / "leaderboard.md", out / "summary.md", leaderboard=board)
    board.to_csv(paths.leaderboard_csv, index=False)
    paths.leaderboard_md.write_text(f"# Leaderboard: {sweep_name}\n\nTrials ranked by best val macro-F1; "
                                    "the last row is the winner's test evaluation.\n\n" + markdown_table(board))

    trials = board[board["split"] == "val"]
    if record.searched and trials["macro_f1"].notna().any():
        paths.plots["val_f1_by_param"] = plots.val_f1_by_param(trials, record.searched, out / "val_f1_by_param.png")
    else:
        paths.notes.append("val_f1_by_param.png skipped: no searched parameters or no val results")
    curves = []
    for trial in record.trials:
        values = trial.history.get(VAL_METRIC, {})
        if values:
            iterations = trial.history.get(schema.METRIC_ITERATION, {})
            x = [iterations.get(step, step) for step in sorted(values)]
            curves.append(plots.Curve(trial.trial_id, x, [values[s] for s in sorted(values)],
                                      killed=trial.run.info.status == "KILLED"))
    if curves:
        has_iterations = all(schema.METRIC_ITERATION in t.history
                             for t in record.trials if t.history.get(VAL_METRIC))
        paths.plots["learning_curves"] = plots.learning_curves(
            curves, out / "learning_curves.png", xlabel="iteration" if has_iterations else "evaluation")
    result = winner_test_result(record)
    if result is not None and result["confusion_matrix"] is not None:
        paths.plots["test_confusion_matrix"] = plots.confusion_matrix_plot(
            result["confusion_matrix"], out / "test_confusion_matrix.png",
            f"winner, {result['label']}")
    elif result is not None:
        paths.notes.append("test_confusion_matrix.png skipped: no confusion counts recorded")
    # The sweep records where its data lived; use it when it exists on this machine.
    data_root = data_root or record.tags.get(schema.TAG_DATA_ROOT) or None
    if data_root is not None:
        try:
            paths.plots["skeleton_previews"] = _preview(record, tracking_uri, data_root,
                                                        out / "skeleton_previews.png")
        except (DataError, ConfigError) as exc:
            paths.notes.append(f"skeleton_previews.png skipped: {exc}")
    audit = audit_sweep(tracking_uri, sweep_name, experiment, record=record)
    paths.summary_md.write_text(_summary(record, board, audit["verdict"]))
    return paths
