"""Step 3 of a sweep: select the winner on val, open the test lockbox once (or reuse its recorded result),
write results/ and attach them to the parent run, and register the tested model in the MLflow Model
Registry (scolio_core/tracking/registry.py).

A *study* is one research question: a representation sweep, and the finetune stage run on its winner. Its
test set is opened once, after its last stage, for the model selected on val across the stages: a sweep
run with `--defer-test` (or `--finetune-profile`) leaves the look to its finetune stage, which compares
the two on the same val ids (`choose_final`) and tests the better one.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from scolio_core import names
from scolio_core.errors import LockboxError
from scolio_core.tracking import lookups
from scolio_sweep.engine.storage import claim_folder
from scolio_sweep.stages.prepare import WINNER_CHECKPOINT_DIR, SweepContext


@dataclass(frozen=True)
class Selection:
    """A sweep's winner on val and where its checkpoint is."""

    trial_id: str
    val: dict[str, float]  # the winner's val metrics at its best evaluation
    checkpoint: Path  # the winner's best checkpoint, copied locally
    parent_run_id: str  # the sweep whose winner it is
    confirmation: object | None = None  # scolio_sweep.stages.confirm.ConfirmationRecord when the candidates were confirmed


@dataclass(frozen=True)
class SweepOutcome:
    name: str
    parent_run_id: str
    trial_id: str  # the winner, selected on val
    val: dict[str, float]  # the winner's val metrics at its best evaluation
    test: dict[str, float]  # its one-shot (or REOPENED) test metrics; empty when the test was deferred
    reopened: bool
    checkpoint: Path  # the winner's best checkpoint, copied locally
    results_dir: Path
    oracle_macro_f1: float | None  # synthetic data: the severity oracle on the test ids
    seen_before: int = 0  # earlier looks at this test set by other studies or entry points
    test_counts: dict[str, int] = field(default_factory=dict)  # test sequences per class
    deferred: bool = False  # no look here: the study's last stage opens the test
    final_stage: str = ""  # for a study's last stage: which stage's model was tested
    model_uri: str = ""  # the tested model in the MLflow Model Registry (models:/<name>@champion)
    oracle_val_macro_f1: float | None = None  # synthetic data: the severity oracle on the val ids
    confirmation: object | None = None  # scolio_sweep.stages.confirm.ConfirmationRecord when the candidates were confirmed
    answer: object | None = None  # scolio_core.evaluation.answer.Answer: the best set and knob effects on val


def trial_id_of(result) -> str:
    """A Tune result's trial id (what the trial's MLflow child run is tagged with)."""
    return str(result.metrics.get("trial_id") or Path(result.path).name)


def ranked_trials(context: SweepContext, results) -> list:
    """The trials that reported a finite sweep metric, best first by their best value over all reports.

    Ties (frequent at the floor: a model that predicts one class scores the same in every trial) go to the
    earlier best evaluation, then by the searched values themselves: never by Ray's trial ids or by timing,
    which differ between two runs of the same sweep, so the same profile and seed select the same configuration.
    """
    metric, mode = context.profile.metric, context.profile.mode
    sign = 1.0 if mode == "max" else -1.0
    scored = []
    for result in results:
        history = result.metrics_dataframe
        if history is None or history.empty or metric not in history:
            continue
        values = [(sign * float(v), position) for position, v in enumerate(history[metric])
                  if isinstance(v, (int, float)) and math.isfinite(v)]
        if values:
            best, at = max(values, key=lambda item: (item[0], -item[1]))
            searched = json.dumps({k: result.config.get(k) for k in sorted(context.profile.search)}, default=str)
            scored.append(((-best, at, searched, trial_id_of(result)), result))
    return [result for _, result in sorted(scored, key=lambda item: item[0])]


def select_winner(context: SweepContext, results):
    """Best trial and its best checkpoint, by the sweep's *validation* metric over all reports (the earliest
    evaluation on a tie, so a re-run selects the same checkpoint)."""
    ranked = ranked_trials(context, results)
    if not ranked:
        raise LockboxError(f"sweep {context.name}: no trial reported a finite {context.profile.metric}")
    best = ranked[0]
    checkpoint, val = best_checkpoint(best, context.profile.metric, context.profile.mode)
    if checkpoint is None:
        raise LockboxError(f"sweep {context.name}: the best trial has no checkpoint to test")
    return best, checkpoint, val


def best_checkpoint(result, metric: str, mode: str):
    """A trial's best kept checkpoint by `metric` (the earliest evaluation on a tie) and its val metrics at
    its best evaluation; (None, {}) when it kept no checkpoint with a finite score."""
    sign = 1.0 if mode == "max" else -1.0
    candidates = [(cp, m) for cp, m in result.best_checkpoints
                  if isinstance(m.get(metric), (int, float)) and math.isfinite(m[metric])]
    if not candidates:
        return None, {}
    checkpoint = min(candidates, key=lambda item: (-sign * item[1][metric], item[1].get("training_iteration", 0)))[0]
    history = result.metrics_dataframe
    row = history.loc[history[metric].idxmax() if mode == "max" else history[metric].idxmin()]
    val = {k: float(row[k]) for k in history.columns if k.startswith(names.VAL_METRIC_PREFIX)
           and isinstance(row[k], (int, float))}
    return checkpoint, val


def select(context: SweepContext, results, confirmed=None) -> Selection:
    """The winner on val, its checkpoint copied next to the sweep, and the selection tagged on the parent.
    With a confirmation (scolio_sweep/stages/confirm.py) the winner is the model its declared rule names, not the search's
    best trial."""
    from mlflow.tracking import MlflowClient

    import scolio_core.training.ensemble  # noqa: F401  (registers ensembles: an earlier run's winner may be one)
    from scolio_core.training.checkpoint import clear_for_copy

    errors = [r for r in results if r.error is not None]
    if errors:
        print(f"{len(errors)} trial(s) failed; selecting among the others", file=sys.stderr)
    if confirmed is not None:
        best, checkpoint, val = confirmed.tested_result, confirmed.tested_checkpoint, confirmed.tested_val
    else:
        best, checkpoint, val = select_winner(context, results)
    trial_id = trial_id_of(best)
    # Only a copy scoliotune made is replaced, never a folder someone else put there.
    local = context.work_dir / WINNER_CHECKPOINT_DIR
    if confirmed is not None and confirmed.ensemble:
        val = write_tested_ensemble(context, local, confirmed.ensemble, confirmed.record.seeds)
    else:
        clear_for_copy(local)
        checkpoint.to_directory(str(local))

    parent = context.parent_run_id
    client = MlflowClient(context.tracking_uri)
    child = lookups.find_trial_run(client, client.get_run(parent).info.experiment_id, parent, trial_id)
    for key, value in {names.TAG_SELECTED_TRIAL: trial_id, names.TAG_SELECTED_CHECKPOINT: checkpoint.path,
                       names.TAG_SELECTED_RUN_ID: child.info.run_id if child else "",
                       names.TAG_SELECTED_VAL_MACRO_F1:
                           f"{val.get(context.profile.metric, float('nan')):.6f}"}.items():
        client.set_tag(parent, key, value)
    # The selected val numbers as metrics too, so the parent's row in the runs table shows them beside test/*.
    selected = {k: v for k, v in val.items() if k in (context.profile.metric, names.METRIC_VAL_ACCURACY)
                and math.isfinite(v)}
    if selected:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(parent, metrics=[Metric(k, v, now, 0) for k, v in selected.items()], synchronous=True)
    return Selection(trial_id=trial_id, val=val, checkpoint=local, parent_run_id=parent,
                     confirmation=confirmed.record if confirmed is not None else None)


def tested_rule(tested: str, seeds: list[int]) -> str:
    """What the look tests, in words (tagged on the parent run before the look)."""
    if tested == "ensemble":
        return (f"the selected configuration's seed ensemble: the mean of the logits of its re-trainings with seeds "
                f"{seeds}, each at its best val evaluation (declared by the profile before the test opens; never "
                "chosen by test)")
    return (f"the selected configuration's model from its first confirmation seed ({seeds[0]}), at its best val "
            "evaluation (declared by the profile before the test opens; never chosen by test)")


def write_tested_ensemble(context: SweepContext, local: Path, members: tuple, seeds: list[int]) -> dict[str, float]:
    """The selected configuration's re-trainings as one ensemble model at `local` (scolio_core/training/ensemble.py),
    and the ensemble's own val metrics: its val number is that of what will be tested."""
    import contextlib

    from scolio_core.evaluation.predict import predict_checkpoint
    from scolio_core.training.ensemble import read_model, write_ensemble
    from scolio_core.training.metrics import flatten_metrics

    # as_directory: the Tune checkpoints themselves when storage is local (write_ensemble copies them once),
    # a download only when it is remote
    with contextlib.ExitStack() as stack:
        found = [Path(stack.enter_context(checkpoint.as_directory())) for _, checkpoint in members]
        write_ensemble(local, found, rule=tested_rule("ensemble", seeds))
    model = read_model(local)
    predictions = predict_checkpoint(model, test_config(context, model), list(context.trainval.val))
    return flatten_metrics(predictions.metrics(), names.SPLIT_VAL)


def test_config(context: SweepContext, checkpoint):
    """The checkpoint's own config pointed at the sweep's data (trials' contracts hold no partition or root)."""
    data = context.base_config.data
    return checkpoint.config.replace(**{"data.root": data.root, "data.partition": data.partition,
                                        "data.pose_dir": data.pose_dir, "data.silhouette_dir": data.silhouette_dir})


test_config.__test__ = False  # not a pytest test


def open_test(context: SweepContext, checkpoint_dir: Path, *, study: str, mirror_run_id: str, reopen_test: bool):
    """The study's one look at the test set with the checkpoint in `checkpoint_dir`, mirrored on the parent
    run `mirror_run_id`; a re-run reuses the recorded look. Returns the lockbox's result."""
    from scolio_core.evaluation.lockbox import evaluate_test_once
    from scolio_core.tracking.ledger import MlflowLedger, ParentRunLog
    from scolio_core.training.ensemble import read_model

    winner = read_model(checkpoint_dir)  # one checkpoint, or the selected configuration's seed ensemble
    config = test_config(context, winner)
    # The test set's ledger lives in this tracking store and is shared with every other entry point.
    result = evaluate_test_once(winner, config, context.split, MlflowLedger(context.tracking_uri), study=study,
                                entry_point=f"sweeps/{context.kind}.py", reopen=reopen_test,
                                reopen_flag="--reopen-test", mirror=ParentRunLog(context.tracking_uri, mirror_run_id))
    if result.reused:
        from scolio_core.training.ensemble import model_hash

        now = model_hash(checkpoint_dir)
        if result.model_hash and result.model_hash != now:
            # The recorded numbers belong to the model tested then; registering this one under them would be a
            # model nobody tested. (E.g. the profile's confirm.tested changed between the look and this re-run.)
            raise LockboxError(f"study {study}: its recorded look {result.look} tested model {result.model_hash[:12]}, "
                               f"but this run selected model {now[:12]} (the protocol or code changed since the look); "
                               "nothing was registered: start a new study with another --name, or pass "
                               "--reopen-test to test this model as a REOPENED look")
        print(f"one-shot test already recorded for study {study} (look {result.look} of this test set); "
              "not re-evaluated")
    log_test_set(context, result, mirror_run_id)
    return result


def log_test_set(context: SweepContext, result, run_id: str) -> None:
    """The look's test set as the MLflow dataset input of the parent run that records the look (the only
    run that lists it; a re-run logs the same input, which MLflow keeps once)."""
    from mlflow.tracking import MlflowClient

    from scolio_core.tracking.lineage import dataset_input, test_set_ref

    if result.test_set is None:
        return
    ref = test_set_ref(context.split.partition, result.test_set.key, str(context.base_config.data.root),
                       result.test_set.ids)
    MlflowClient(context.tracking_uri).log_inputs(run_id, datasets=[dataset_input(ref)])


def register_model(context: SweepContext, checkpoint_dir: Path, result, *, study: str, parent_run_id: str,
                   also_tag: tuple[str, ...] = ()) -> str:
    """Register the model the study's look tested (scolio_core/tracking/registry.py); returns its URI."""
    from scolio_core.tracking.registry import register_study_model

    registered = register_study_model(
        context.tracking_uri, parent_run_id=parent_run_id, checkpoint_dir=checkpoint_dir, study=study,
        experiment=context.experiment, test_metrics=result.metrics,
        test_set_key=result.test_set.key if result.test_set else "", look=result.look, reopened=result.reopened,
        also_tag=also_tag)
    if registered.new:
        print(f"registered the tested model: {registered.name} version {registered.version} "
              f"(alias {registered.uri.rsplit('@', 1)[1]})")
    return registered.uri


def write_results(context: SweepContext) -> None:
    from mlflow.tracking import MlflowClient

    from scolio_core.tracking.report import build_report

    claim_folder(context.results_dir, "this sweep's results")
    report = build_report(context.tracking_uri, context.name, context.results_dir, experiment=context.experiment)
    client = MlflowClient(context.tracking_uri)
    for path in report.files():  # what the report wrote, never whatever else the folder holds
        client.log_artifact(context.parent_run_id, str(path), artifact_path="results")


def outcome_of(context: SweepContext, selection: Selection, result=None, *, final_stage: str = "",
               model_uri: str = "", answer=None) -> SweepOutcome:
    return SweepOutcome(
        name=context.name, parent_run_id=selection.parent_run_id, trial_id=selection.trial_id, val=selection.val,
        test=result.metrics if result else {}, reopened=bool(result and result.reopened),
        checkpoint=selection.checkpoint, results_dir=context.results_dir, oracle_macro_f1=context.oracle_macro_f1,
        seen_before=result.seen_before if result else 0,
        test_counts=result.test_set.class_counts if result and result.test_set else {},
        deferred=result is None, final_stage=final_stage, model_uri=model_uri,
        oracle_val_macro_f1=context.oracle_val_macro_f1, confirmation=selection.confirmation, answer=answer)


def finish_sweep(context: SweepContext, results, reopen_test: bool = False, *, defer_test: bool = False,
                 confirmed=None, answer=None) -> SweepOutcome:
    """Select on val (the confirmation's choice when `confirmed`, scolio_sweep/stages/confirm.py), then test once through the
    lockbox (or reuse the recorded test) unless the study's test is deferred to its finetune stage; write
    results/."""
    from mlflow.tracking import MlflowClient

    selection = select(context, results, confirmed)
    client = MlflowClient(context.tracking_uri)
    client.set_tag(context.parent_run_id, names.TAG_STUDY, context.name)
    result, model_uri = None, ""
    if defer_test:
        client.set_tag(context.parent_run_id, names.TAG_TEST_DEFERRED, "true")
    else:
        result = open_test(context, selection.checkpoint, study=context.name, mirror_run_id=selection.parent_run_id,
                           reopen_test=reopen_test)
    write_results(context)
    if result is not None:  # after results/: a failed registration loses nothing, and a re-run registers it
        model_uri = register_model(context, selection.checkpoint, result, study=context.name,
                                   parent_run_id=selection.parent_run_id)
    return outcome_of(context, selection, result, model_uri=model_uri, answer=answer)


def choose_final(baseline_val: float, finetune_val: float) -> str:
    """Which stage's model a study tests: the finetune only when it beats its baseline on val (the same
    val ids; a tie keeps the baseline, the simpler model)."""
    return "finetune" if finetune_val > baseline_val else "baseline"


def _with_ci(metrics: dict[str, float], key: str) -> str:
    """`0.6942 [95 % CI 0.55, 0.83]` from the lockbox's bootstrap interval over test sequences."""
    value, low, high = (metrics.get(k, float("nan")) for k in (key, *names.ci_metrics(key)))
    return f"{value:.4f}" if math.isnan(low) else f"{value:.4f} [95 % CI {low:.2f}, {high:.2f}]"


def print_summary(context: SweepContext, outcome: SweepOutcome) -> None:
    metric = context.profile.metric
    label = "REOPENED test (not a clean one-shot estimate)" if outcome.reopened else "one-shot test"
    board_path = context.results_dir / "leaderboard.csv"
    if board_path.exists():
        import pandas as pd

        board = pd.read_csv(board_path)
        searched = [c for c in board.columns if c in context.profile.search]
        columns = [c for c in ["rank", "trial_id", "split", "status", *searched, "macro_f1", "accuracy", "iterations"]
                   if c in board.columns]
        print()
        print(board[columns].to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4g}"))
    print()
    # Every number is printed beside what was measured on the same ids: val beside val's oracle, test with its
    # interval, its class counts and test's oracle (synthetic data; the oracles differ between the two sets).
    print(f"sweep {context.name}: winner {outcome.trial_id} selected on val")
    val_oracle = (f"   (severity oracle on these val ids: {outcome.oracle_val_macro_f1:.4f})"
                  if outcome.oracle_val_macro_f1 is not None else "")
    print(f"  val  {metric}: {outcome.val.get(metric, float('nan')):.4f}   "
          f"val accuracy: {outcome.val.get(names.METRIC_VAL_ACCURACY, float('nan')):.4f}{val_oracle}")
    if outcome.confirmation is not None:
        print("        (the tested seed ensemble on val: its re-trainings' mean logits)"
              if getattr(outcome.confirmation, "tested", "") == "ensemble" else
              "        (the tested model's best evaluation on val: one of the confirmed seeds)")
        for line in outcome.confirmation.summary_lines():
            print(line)
    else:
        print("        (the best of many evaluations on a small val set: biased upwards, not an estimate)")
    if outcome.answer is not None:  # scolio_sweep/stages/answer.py: what val cannot tell apart, and each knob
        for line in outcome.answer.summary_lines():
            print(line)
    if outcome.deferred:
        print("  test: no look in this stage (a study opens its test set once, after its last stage)")
    else:
        stage = f" of the {outcome.final_stage} model" if outcome.final_stage else ""
        print(f"  {label}{stage}: macro-F1 {_with_ci(outcome.test, names.METRIC_TEST_MACRO_F1)}  "
              f"accuracy {_with_ci(outcome.test, names.METRIC_TEST_ACCURACY)}")
        if outcome.test_counts:
            counts = " / ".join(f"{n} {c}" for c, n in outcome.test_counts.items())
            oracle = (f"; severity oracle on these test ids: {outcome.oracle_macro_f1:.4f}"
                      if outcome.oracle_macro_f1 is not None else "")
            print(f"        on {sum(outcome.test_counts.values())} test sequences ({counts}){oracle}")
        if outcome.seen_before:
            print(f"  note: this test set had been looked at {outcome.seen_before} time(s) before this study "
                  "(by other sweeps or scolio eval; `scolio audit` lists them): not a first look")
        if outcome.model_uri:
            print(f"  model: {outcome.model_uri}   (scolio_core.tracking.registry.load_registered_model(uri).predict([poses, ...]))")
    print(f"  results: {outcome.results_dir}/   MLflow: {context.tracking_uri} (parent run {outcome.parent_run_id})")
