"""Rebuild a sweep's results/ folder from the MLflow record alone.

    build_report(resolve_tracking_uri(None), "repr-sweep", "results/repr-sweep")   # scolio report

Reads the record (tracking/record.py) and writes the leaderboard (CSV and Markdown), summary.md with the
audit's verdict (tracking/audit.py) and the plots. Nothing comes from the Ray results folder, so the results
can be regenerated on any machine that can reach the tracking store.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from scolio_core import names
from scolio_core.errors import ConfigError, DataError, ScolioError
from scolio_core.tracking.audit import audit_sweep
from scolio_core.tracking.record import (
    SweepRecord,
    Trial,
    config_key,
    confirmation_record,
    download_json,
    load_sweep,
    test_interval,
    winner_test_result,
)

VAL_METRIC = names.METRIC_VAL_MACRO_F1  # the leaderboard ranks by it whatever the sweep selected on
# Test metrics shown with their 95 % interval in summary.md (scolio_core.training.metrics.CI_METRICS).
TEST_CI_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "sensitivity/positive",
                   "specificity/negative", "refer/sensitivity", "refer/specificity")
INT_COLUMNS = ("rank", "best_step", "iterations", "evaluations")


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


# --------------------------------------------------------------------------------------- leaderboard
def _val_row(trial: Trial, searched: list[str], split: str) -> dict[str, Any]:
    """A child run's leaderboard row: its searched values and its best val evaluation."""
    step, best = trial.best(VAL_METRIC, "max")
    iterations = trial.history.get(names.METRIC_ITERATION, {})
    return {"trial_id": trial.trial_id, "run_id": trial.run_id, "split": split, "status": trial.status,
            **{name: trial.params.get(name) for name in searched},
            "macro_f1": best, "accuracy": trial.history.get(names.METRIC_VAL_ACCURACY, {}).get(step, math.nan),
            "best_step": step, "iterations": max(iterations.values()) if iterations else None,
            "evaluations": len(trial.history.get(VAL_METRIC, {}))}


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
    frame["_config"] = [config_key(trial, record.searched) for trial in record.trials]
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
               "trial_id": winner.trial_id if winner else record.tags.get(names.TAG_SELECTED_TRIAL, "not recorded"),
               "run_id": winner.run_id if winner else record.tags.get(names.TAG_SELECTED_RUN_ID, ""),
               "status": winner.status if winner else "",
               **{name: winner.params.get(name) if winner else None for name in record.searched},
               "macro_f1": metrics.get(names.METRIC_TEST_MACRO_F1, math.nan),
               "accuracy": metrics.get(names.METRIC_TEST_ACCURACY, math.nan)}
        for name in ("macro_f1", "accuracy"):
            low, high = test_interval(metrics, name) or (math.nan, math.nan)
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



# ------------------------------------------------------------------------------------------- report
def _summary(record: SweepRecord, board: pd.DataFrame, audit_text: str, answer: list[str] = ()) -> str:
    trials = board[board["split"] == "val"]
    counts = Counter(trials["status"])
    winner = record.winner()
    lines = [f"# Sweep {record.name}", "",
             f"- trials: {len(trials)} ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))})",
             f"- selection: {record.metric} ({record.mode}) on split "
             f"{record.tags.get(names.TAG_SELECTION_SPLIT, 'not recorded')}",
             f"- profile: {record.tags.get(names.TAG_PROFILE, 'not recorded')}; partition: "
             f"{record.tags.get(names.TAG_PARTITION, 'not recorded')}",
             f"- searched: {', '.join(record.searched) or 'nothing recorded'}"]
    if names.TAG_ORACLE_VAL_MACRO_F1 in record.tags:
        lines.append("- severity-oracle macro-F1 on the val ids (synthetic data; the reference a val number is "
                     f"compared with): {record.tags[names.TAG_ORACLE_VAL_MACRO_F1]}")
    if names.TAG_ORACLE_MACRO_F1 in record.tags:
        lines.append("- severity-oracle macro-F1 on the test ids (synthetic data; the reference a test number is "
                     f"compared with): {record.tags[names.TAG_ORACLE_MACRO_F1]}")
    lines += ["", "## Winner", ""]
    if winner is None:
        lines.append("No winner recorded.")
    else:
        step, best = winner.best(VAL_METRIC)
        acc = winner.history.get(names.METRIC_VAL_ACCURACY, {}).get(step, math.nan)
        lines.append(f"Trial {winner.trial_id} (run {winner.run_id}, {winner.status}): best val macro-F1 "
                     f"{best:.4f} at evaluation {step} (val accuracy {acc:.4f}).")
        lines += [f"- {name} = {winner.params.get(name)}" for name in record.searched]
    lines += _confirmation_summary(record)
    lines += answer  # tracking/answer_view.py: the best set on val and each knob's effect
    result = winner_test_result(record)
    lines += ["", "## Test", ""]
    if result is None:
        lines.append("Test not evaluated.")
    else:
        metrics = result["metrics"]
        lines.append(f"**{result['label']}** of the winner"
                     + (" (REOPENED: not a clean one-shot estimate)" if result["reopened"] else "")
                     + (f", n = {int(metrics[names.METRIC_TEST_N])}" if names.METRIC_TEST_N in metrics else "") + ":")
        lines.append("")
        for name in TEST_CI_METRICS:
            metric = names.split_metric(names.SPLIT_TEST, name)
            if metric not in metrics:
                continue
            ci = test_interval(metrics, name)
            lines.append(f"- {name}: {metrics[metric]:.4f}"
                         + (f" (95 % CI {ci[0]:.4f} to {ci[1]:.4f})" if ci else ""))
    lines += ["", "## Audit", "", "```", audit_text, "```", ""]
    return "\n".join(lines)


def _confirmation_summary(record: SweepRecord) -> list[str]:
    confirmation = confirmation_record(record)
    if confirmation is None:
        return []
    metric = confirmation.get("metric", record.metric)
    how = (f"were raced over seeds {confirmation['seeds']}: one seed per round, and a one-sided paired Wilcoxon test "
           f"over the val sequences dropped a candidate worse than the leader at p < {confirmation.get('alpha')}"
           if confirmation.get("rule") == "racing" else f"were trained again with seeds {confirmation['seeds']}")
    lines = ["", "## Confirmation before selection", "",
             f"The top {len(confirmation['candidates'])} configurations by search val {how} (same train and val ids, "
             f"full budget). Selected: the best mean over those seeds among the candidates not dropped. Tested: "
             f"{record.tags.get(names.TAG_CONFIRM_RULE, 'rule not recorded')}.", "",
             f"| search rank | configuration | search {metric} | confirmed mean (95 % CI) | per seed | optimism |",
             "|---|---|---|---|---|---|"]
    for row in confirmation["candidates"]:
        interval = (f" ({row['ci_low']:.4f} to {row['ci_high']:.4f})" if row.get("ci_low") is not None else "")
        chosen = " **selected**" if row["search_trial"] == confirmation.get("chosen") else ""
        if row.get("dropped_after"):
            chosen += f" (dropped after round {row['dropped_after']})"
        seeds = " / ".join(f"{v:.4f}" for _, v in sorted(row["seed_vals"].items(), key=lambda kv: int(kv[0])))
        lines.append(f"| {row['rank']}{chosen} | {row['label']} | {row['search_val']:.4f} | {row['mean']:.4f}"
                     f"{interval} | {seeds} | {row['optimism']:+.4f} |")
    optimism = record.parent.data.metrics.get(names.confirmed_metric(metric, "optimism"))
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
    lockbox reads test data, and the tests' read hook would flag any other read)."""
    from scolio_core.data.release import index_release, load_pose, resolve_modality_root
    from scolio_core.tracking.plots import skeleton_preview

    configs = preview_configs(record)
    if not configs:
        raise DataError("no trial used a skeleton representation")
    winner = record.winner()
    contract = (download_json(tracking_uri, winner.run_id, f"{names.ARTIFACT_CHECKPOINT}/contract.json")
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


def build_report(tracking_uri: str, sweep_name: str, out_dir: str | Path,
                 experiment: str = names.DEFAULT_EXPERIMENT,
                 data_root: str | Path | None = None) -> ReportPaths:
    """Write leaderboard.csv/.md, summary.md and the plots for `sweep_name` into `out_dir`.

    Skeleton previews are drawn when pose data is found under `data_root` (default: the sweep's
    `scolio.data_root` tag, names.TAG_DATA_ROOT); otherwise `ReportPaths.notes` says why they were skipped."""
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
            iterations = trial.history.get(names.METRIC_ITERATION, {})
            x = [iterations.get(step, step) for step in sorted(values)]
            curves.append(plots.Curve(trial.trial_id, x, [values[s] for s in sorted(values)],
                                      killed=trial.run.info.status == "KILLED"))
    if curves:
        has_iterations = all(names.METRIC_ITERATION in t.history
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
    data_root = data_root or record.tags.get(names.TAG_DATA_ROOT) or None
    if data_root is not None:
        try:
            paths.plots["skeleton_previews"] = _preview(record, tracking_uri, data_root,
                                                        out / "skeleton_previews.png")
        except (DataError, ConfigError) as exc:
            paths.notes.append(f"skeleton_previews.png skipped: {exc}")
    audit = audit_sweep(tracking_uri, sweep_name, experiment, record=record)
    from scolio_core.tracking.answer_view import answer_section

    paths.summary_md.write_text(_summary(record, board, audit["verdict"], answer_section(tracking_uri, record)))
    return paths
