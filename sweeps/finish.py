"""Step 3 of a sweep: select the winner on val, open the test lockbox once (or reuse its recorded result),
write results/ and attach them to the parent run."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from scolio_core.errors import LockboxError
from scolio_core.tracking import schema
from sweeps.prepare import SweepContext


@dataclass(frozen=True)
class SweepOutcome:
    name: str
    parent_run_id: str
    trial_id: str  # the winner, selected on val
    val: dict[str, float]  # the winner's val metrics at its best evaluation
    test: dict[str, float]  # its one-shot (or REOPENED) test metrics
    reopened: bool
    checkpoint: Path  # the winner's best checkpoint, copied locally
    results_dir: Path
    oracle_macro_f1: float | None
    seen_before: int = 0  # earlier looks at this test set by other studies or entry points
    test_counts: dict[str, int] = field(default_factory=dict)  # test sequences per class


def select_winner(context: SweepContext, results):
    """Best trial and its best checkpoint, by the sweep's *validation* metric over all reports."""
    metric, mode = context.profile.metric, context.profile.mode
    best = results.get_best_result(metric=metric, mode=mode, scope="all", filter_nan_and_inf=True)
    checkpoint = best.get_best_checkpoint(metric=metric, mode=mode)
    if checkpoint is None:
        raise LockboxError(f"sweep {context.name}: the best trial has no checkpoint to test")
    history = best.metrics_dataframe
    row = history.loc[history[metric].idxmax() if mode == "max" else history[metric].idxmin()]
    val = {k: float(row[k]) for k in history.columns if k.startswith("val/") and isinstance(row[k], (int, float))}
    return best, checkpoint, val


def finish_sweep(context: SweepContext, results, reopen_test: bool = False) -> SweepOutcome:
    """Select on val, test once through the lockbox (or reuse the recorded test), write results/."""
    from mlflow.tracking import MlflowClient

    from scolio_core.evaluation.lockbox import evaluate_test_once
    from scolio_core.tracking.ledger import MlflowLedger, ParentRunLog
    from scolio_core.tracking.report import build_report
    from scolio_core.training.checkpoint import read_checkpoint

    errors = [r for r in results if r.error is not None]
    if errors:
        print(f"{len(errors)} trial(s) failed; selecting among the others", file=sys.stderr)
    best, checkpoint, val = select_winner(context, results)
    trial_id = best.metrics.get("trial_id") or Path(best.path).name
    local = context.work_dir / "winner_checkpoint"
    shutil.rmtree(local, ignore_errors=True)
    checkpoint.to_directory(str(local))
    winner = read_checkpoint(local)

    parent = context.parent_run_id
    client = MlflowClient(context.tracking_uri)
    child = schema.find_trial_run(client, client.get_run(parent).info.experiment_id, parent, trial_id)
    for key, value in {schema.TAG_SELECTED_TRIAL: trial_id, schema.TAG_SELECTED_CHECKPOINT: checkpoint.path,
                       schema.TAG_SELECTED_RUN_ID: child.info.run_id if child else "",
                       schema.TAG_SELECTED_VAL_MACRO_F1:
                           f"{val.get(context.profile.metric, float('nan')):.6f}"}.items():
        client.set_tag(parent, key, value)

    data = context.base_config.data
    config = winner.config.replace(**{"data.root": data.root, "data.partition": data.partition,
                                      "data.pose_dir": data.pose_dir, "data.silhouette_dir": data.silhouette_dir})
    # The test set's ledger lives in this tracking store and is shared with every other entry point; a re-run
    # (a restored sweep) reuses its completed look instead of looking again.
    result = evaluate_test_once(winner, config, context.split, MlflowLedger(context.tracking_uri),
                                study=context.name, entry_point=f"sweeps/{context.kind}.py", reopen=reopen_test,
                                reopen_flag="--reopen-test", mirror=ParentRunLog(context.tracking_uri, parent))
    if result.reused:
        print(f"one-shot test already recorded for sweep {context.name} (look {result.look} of this test set); "
              "not re-evaluated")
    test, reopened = result.metrics, result.reopened
    build_report(context.tracking_uri, context.name, context.results_dir, experiment=context.experiment)
    client.log_artifacts(parent, str(context.results_dir), artifact_path="results")
    return SweepOutcome(name=context.name, parent_run_id=parent, trial_id=trial_id, val=val, test=test,
                        reopened=reopened, checkpoint=local, results_dir=context.results_dir,
                        oracle_macro_f1=context.oracle_macro_f1, seen_before=result.seen_before,
                        test_counts=result.test_set.class_counts if result.test_set else {})


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
    print(f"sweep {context.name}: winner {outcome.trial_id} selected on val")
    print(f"  val  {metric}: {outcome.val.get(metric, float('nan')):.4f}   "
          f"val accuracy: {outcome.val.get('val/accuracy', float('nan')):.4f}")
    print(f"  {label}: macro-F1 {outcome.test.get('test/macro_f1', float('nan')):.4f}  "
          f"accuracy {outcome.test.get('test/accuracy', float('nan')):.4f}")
    if outcome.seen_before:
        print(f"  note: this test set had been looked at {outcome.seen_before} time(s) before this sweep "
              "(by other sweeps or scolio eval; `scolio audit` lists them): not a first look")
    if outcome.oracle_macro_f1 is not None:
        print(f"  synthetic data oracle ceiling (macro-F1 from the latent severity): {outcome.oracle_macro_f1:.4f}")
    print(f"  results: {outcome.results_dir}/   MLflow: {context.tracking_uri} (parent run {outcome.parent_run_id})")
