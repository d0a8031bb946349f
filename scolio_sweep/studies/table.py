"""The partition table study: one fixed recipe on every official partition and several seeds, each
partition's test set opened once for all its seeds' models (the command is `sweeps/table.py`, whose
docstring has the usage).

Each seed trains on Ray with the whole budget (a grid over `train.seed`, no early stopping) and keeps its best
checkpoint on val (carved from TRAIN_SET), so nothing is chosen by test. The table is the mean over seeds with
a 95 % t-interval per metric, beside the per-class counts behind them. Re-running the same name resumes:
finished trials are restored and a partition whose look is recorded reuses it. Without a data root the
profile's synthetic stand-in gets the four partition files the release has.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scolio_core import CLASS_NAMES, names
from scolio_core.errors import ConfigError, LockboxError
from scolio_core.tracking import lookups
from scolio_core.training.metrics import CI_METRICS, mean_ci, metrics_from_confusion
from scolio_sweep.engine.storage import claim_folder
from scolio_sweep.search.space import Choice
from scolio_sweep.settings.profile import Confirmation, SweepProfile, load_profile
from scolio_sweep.settings.run_settings import SweepSettings

# Columns of table.md, in the order papers report them; keys are CI_METRICS names.
# The negative class's one-vs-rest specificity and the refer view's sensitivity are the same number (both
# count non-negative sequences not called negative), so it is one column.
TABLE_COLUMNS = {"accuracy": "Accuracy", "macro_precision": "Macro-P", "macro_recall": "Macro-R",
                 "macro_f1": "Macro-F1", "sensitivity/positive": "Sens. (positive)",
                 "specificity/negative": "Spec. (negative) = refer sens.", "refer/specificity": "Refer spec."}


@dataclass(frozen=True)
class PartitionResult:
    """One partition's seeds: val and test metrics per seed, and the counts behind them."""

    partition: str  # the token, e.g. 112
    sweep: str
    parent_run_id: str
    per_seed: list[dict]  # one row per seed: seed, val/<metric>, test metrics (CI_METRICS names)
    train_counts: dict[str, int]
    test_counts: dict[str, int]
    look: int
    reused: bool
    seen_before: int


def recipe_from_profile(recipe: str) -> SweepProfile:
    profile = load_profile(recipe)
    if profile.search:
        raise ConfigError(f"--recipe {recipe}: a table trains one fixed recipe, but the profile searches "
                          f"{', '.join(profile.search)}; run the sweep and pass --from-sweep NAME, or fix "
                          "those fields")
    return profile


def recipe_from_study(study: str, tracking_uri: str, experiment: str) -> tuple[SweepProfile, str | None]:
    """The configuration a study's sweep selected on val (from its checkpoint's contract), with the budget,
    resources and stand-in of the profile the sweep ran; and the sweep's data root."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from scolio_core.training.checkpoint import read_checkpoint

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    parent = lookups.find_parent_run(client, found.experiment_id, study) if found else None
    if parent is None:
        raise ConfigError(f"--from-sweep {study!r}: no sweep of that name in experiment {experiment!r} of "
                          f"{tracking_uri}")
    tags = parent.data.tags
    child = tags.get(names.TAG_SELECTED_RUN_ID)
    if not child:
        raise ConfigError(f"--from-sweep {study!r}: the sweep has not selected a configuration yet (did it finish?)")
    local = Path(mlflow.artifacts.download_artifacts(run_id=child, artifact_path=names.ARTIFACT_CHECKPOINT,
                                                      tracking_uri=tracking_uri))
    config = read_checkpoint(local).config
    if config.train.init_from:
        raise ConfigError(f"--from-sweep {study!r}: the selected model was warm-started from "
                          f"{config.train.init_from}; a table retrains from scratch: give the baseline sweep")
    base = load_profile(tags.get(names.TAG_PROFILE, ""))
    fixed = {k: v for k, v in config.to_flat().items()
             if k not in ("data.root", "data.partition", "train.seed", "train.init_from")}
    return (base.replace(name=study, fixed=fixed, search={}, points_to_evaluate=[], confirm=Confirmation()),
            tags.get(names.TAG_DATA_ROOT))


def partition_files(profile: SweepProfile, partitions: list[tuple[str, tuple[int, int, int]]],
                    data_root: str | None, partition_dir: str | None, cache_dir: str | None) -> tuple[Path, dict]:
    """The data root and each partition's file, all checked to exist; the stand-in gets its files written."""
    from scolio_core.data.synth import partition_filename, write_partition
    from scolio_sweep.stages.prepare import synthetic_root

    if data_root:
        root = Path(data_root).expanduser().resolve()
    else:
        root = synthetic_root(profile.synth, Path(cache_dir) if cache_dir else None)
    folder = Path(partition_dir).expanduser().resolve() if partition_dir else root
    files = {}
    for token, ratio in partitions:
        path = folder / partition_filename(ratio)
        if not path.is_file() and (root / "synth_meta.json").is_file() and folder == root:
            write_partition(root, ratio, seed=profile.synth.seed)  # a stand-in: carve the release's file
        if not path.is_file():
            raise ConfigError(f"{path}: partition file not found (pass --partition-dir, e.g. "
                              "../shared/scoliosis1k_partitions)")
        files[token] = path
    return root, files


def run_partition(profile: SweepProfile, settings: SweepSettings, token: str, seeds: list[int]) -> PartitionResult:
    """Train the recipe on one partition for every seed, then open its test set once for all of them."""
    from ray import tune

    from scolio_core.data.release import index_release
    from scolio_core.evaluation.lockbox import evaluate_models_once
    from scolio_core.tracking.guard import table_family
    from scolio_core.tracking.ledger import MlflowLedger, ParentRunLog
    from scolio_core.training.checkpoint import clear_for_copy, read_checkpoint
    from scolio_sweep.stages.finish import best_checkpoint, test_config
    from scolio_sweep.stages.prepare import prepare_sweep
    from scolio_sweep.stages.run import run_trials, trial_param_space
    from scolio_sweep.trainables.baseline import train_baseline

    seeded = profile.replace(search={"train.seed": Choice(tuple(seeds))})
    context = prepare_sweep(seeded, settings, kind="table")
    space = trial_param_space(context)
    space["train.seed"] = tune.grid_search(seeds)
    results = run_trials(context, train_baseline, param_space=space, num_samples=1)
    metric, mode = profile.metric, profile.mode
    checkpoints, val = {}, {}
    for result in results:
        seed = int(result.config["train.seed"])
        checkpoint, best_val = best_checkpoint(result, metric, mode) if result.metrics_dataframe is not None \
            else (None, {})
        if checkpoint is None:
            raise LockboxError(f"partition {token}: seed {seed} kept no checkpoint with a finite {metric} "
                               f"({result.error or 'no evaluation'}); re-run the same --name to resume it")
        local = context.work_dir / f"seed{seed}_checkpoint"
        clear_for_copy(local)  # only a checkpoint scoliotune wrote is replaced
        checkpoint.to_directory(str(local))
        checkpoints[f"seed{seed}"] = read_checkpoint(local)
        val[seed] = best_val.get(metric, float("nan"))
    missing = sorted(set(seeds) - set(val))
    if missing:
        raise LockboxError(f"partition {token}: no result for seed(s) {missing}")
    config = test_config(context, next(iter(checkpoints.values())))  # the seeds differ only in train.seed
    look = evaluate_models_once(checkpoints, config, context.split, MlflowLedger(context.tracking_uri),
                                study=context.name, entry_point="sweeps/table.py", reopen=settings.reopen_test,
                                mirror=ParentRunLog(context.tracking_uri, context.parent_run_id),
                                family=table_family(context.name, "table"))
    if set(look.confusion_matrices) != set(checkpoints):
        raise LockboxError(f"partition {token}: its recorded test look tested {sorted(look.confusion_matrices)}, "
                           f"not {sorted(checkpoints)}; another seed list is another table: use another --name")
    rows = []
    for seed in seeds:
        test = metrics_from_confusion(look.confusion_matrices[f"seed{seed}"])
        rows.append({"seed": seed, names.split_metric(names.SPLIT_VAL, metric.split("/", 1)[-1]): val[seed], **test})
    log_partition(context, rows, seeds, look)
    labels = {i: entry.label for i, entry in index_release(config.data.modality_root(config.input.modality)).items()}
    train_counts = {c: sum(1 for i in context.split.train + context.split.val if CLASS_NAMES[labels[i]] == c)
                    for c in CLASS_NAMES}
    return PartitionResult(partition=token, sweep=context.name, parent_run_id=context.parent_run_id, per_seed=rows,
                           train_counts=train_counts, test_counts=dict(look.test_set.class_counts), look=look.look,
                           reused=look.reused, seen_before=look.seen_before)


def log_partition(context, rows: list[dict], seeds: list[int], look) -> None:
    """Per-seed and mean test metrics on the partition's parent run, its tags, and the test set as its input."""
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from scolio_sweep.stages.finish import log_test_set

    now = int(time.time() * 1000)
    metrics = [Metric(names.seed_test_metric(row["seed"], name), row[name], now, 0)
               for row in rows for name in CI_METRICS]
    metrics += [Metric(names.mean_test_metric(name), float(np.mean([row[name] for row in rows])), now, 0)
                for name in CI_METRICS]
    client = MlflowClient(context.tracking_uri)
    client.log_batch(context.parent_run_id, metrics=metrics, synchronous=True)
    client.set_tag(context.parent_run_id, names.TAG_STUDY, context.name)
    client.set_tag(context.parent_run_id, names.TAG_TABLE_SEEDS, json.dumps(seeds))
    log_test_set(context, look, context.parent_run_id)


def build_table(results: list[PartitionResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table: one row per partition with mean / ci_low / ci_high per metric, per-seed rows)."""
    per_seed = pd.DataFrame([{"partition": r.partition, **row} for r in results for row in r.per_seed])
    rows = []
    for r in results:
        row = {"partition": f"1:1:{r.partition[2:]}", "seeds": len(r.per_seed),
               **{f"train_{c}": r.train_counts[c] for c in ("positive", "neutral", "negative")},
               **{f"test_{c}": r.test_counts.get(c, 0) for c in ("positive", "neutral", "negative")}}
        for name in CI_METRICS:
            row[f"{name}_mean"], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = mean_ci(
                [seed_row[name] for seed_row in r.per_seed])
        val_key = next(k for k in r.per_seed[0] if k.startswith(names.VAL_METRIC_PREFIX))
        row[f"{val_key}_mean"] = float(np.mean([seed_row[val_key] for seed_row in r.per_seed]))
        row["look"], row["reused_look"], row["sweep"] = r.look, r.reused, r.sweep
        rows.append(row)
    return pd.DataFrame(rows), per_seed


def _cell(mean: float, low: float, high: float) -> str:
    if math.isnan(low):
        return f"{mean:.3f}"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def table_markdown(table: pd.DataFrame, recipe: str, profile: SweepProfile, data_root: Path,
                   synthetic: bool) -> str:
    config = profile.base_config()
    header = ["Partition (train pos:neu:neg)", "Train pos/neu/neg", "Test pos/neu/neg", "Seeds",
              *TABLE_COLUMNS.values()]
    lines = [f"# {recipe}: one recipe across the Scoliosis1K partitions", "",
             (f"- Data: the synthetic stand-in `{data_root.name}` (one generator run with the release's class "
              "totals; the four partitions are carves of the same sequences)." if synthetic
              else f"- Data: the release at `{data_root}`."),
             f"- Recipe: `{recipe}` — model {config.model.name} width {config.model.width}, "
             f"representation {config.input.representation}"
             + (f" (sigma {config.input.sigma:g}, joint weight {config.input.joint_weight:g})"
                if config.input.modality == "pose" else "")
             + f", loss {config.loss.class_weighting} CE + triplet, {config.train.optimizer} lr {config.train.lr:g}, "
             f"{config.train.iterations} iterations.",
             "- Each seed's checkpoint is its best on val (carved from TRAIN_SET, "
             f"val_fraction {config.data.val_fraction:g}); each partition's test set was opened once for all seeds.",
             "- Cells: mean over seeds [95 % t-interval over seeds, clipped to [0, 1]]. The interval is "
             "seed-to-seed spread only: the test set's own sampling noise (see its per-class counts) comes on top.",
             "- Sens. (positive): positive sequences predicted positive. Spec. (negative): the negative class's "
             "one-vs-rest specificity, i.e. non-negative sequences not called negative, which is also the "
             "sensitivity of the refer view (positive + neutral vs negative). Refer spec.: negative sequences "
             "called negative.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [row["partition"],
                 f"{row['train_positive']}/{row['train_neutral']}/{row['train_negative']}",
                 f"{row['test_positive']}/{row['test_neutral']}/{row['test_negative']}", str(row["seeds"])]
        cells += [_cell(row[f"{k}_mean"], row[f"{k}_ci_low"], row[f"{k}_ci_high"]) for k in TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


TABLE_FILES = ("table.csv", "per_seed.csv", "table.md", "table.png")


def write_outputs(results: list[PartitionResult], out: Path, recipe: str, profile: SweepProfile, data_root: Path,
                  synthetic: bool) -> pd.DataFrame:
    from scolio_core.tracking.plots import partition_table_plot

    table, per_seed = build_table(results)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "table.csv", index=False, float_format="%.6g")
    per_seed.to_csv(out / "per_seed.csv", index=False, float_format="%.6g")
    (out / "table.md").write_text(table_markdown(table, recipe, profile, data_root, synthetic))
    partition_table_plot(per_seed, out / "table.png", title=f"{recipe}: test macro-F1 and accuracy by partition")
    return table


def table_recipe(recipe: str | None, from_sweep: str | None, settings: SweepSettings) -> tuple[SweepProfile, str | None]:
    """The recipe a table trains (a search-free profile, or the configuration a finished sweep selected) and
    the study's data root when it came from a sweep."""
    if from_sweep:
        profile, study_root = recipe_from_study(from_sweep, settings.tracking_uri, settings.experiment)
        return profile.replace(name=f"{from_sweep}-table"), study_root
    return recipe_from_profile(recipe or "table_demo"), None


def run_table(profile: SweepProfile, settings: SweepSettings, partitions: list[tuple[str, tuple[int, int, int]]],
              seeds: list[int], *, name: str | None, data_root: str | None, partition_dir: str | None,
              label: str) -> pd.DataFrame:
    """Every partition's seeds trained and tested once; the table written to results and MLflow."""
    if "train.seed" in profile.fixed:
        profile = profile.replace(fixed={k: v for k, v in profile.fixed.items() if k != "train.seed"})
    name = name or profile.name
    lookups.quote(name, "table name")
    root, files = partition_files(profile, partitions, data_root, partition_dir, settings.cache_dir)
    synthetic = (root / "synth_meta.json").is_file()
    base = dataclasses.replace(settings, data_root=str(root))
    results = []
    for token, _ in partitions:
        partition_settings = dataclasses.replace(base, name=f"{name}-p{token}", partition=str(files[token]))
        result = run_partition(profile, partition_settings, token, seeds)
        tag_table(settings.tracking_uri, result.parent_run_id, name)
        results.append(result)
        print(f"partition {token}: test macro-F1 per seed "
              + ", ".join(f"{row['macro_f1']:.3f}" for row in result.per_seed)
              + (" (recorded look reused)" if result.reused else ""), flush=True)
    out = claim_folder(Path(settings.results_dir) / name, "the table's results")  # never a user's folder
    table = write_outputs(results, out, label, profile, root, synthetic)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    for result in results:
        for file in TABLE_FILES:  # what write_outputs wrote, never whatever else the folder holds
            client.log_artifact(result.parent_run_id, str(out / file), artifact_path="table")
    print()
    print((out / "table.md").read_text())
    print(f"table: {out}/table.md, table.csv, per_seed.csv, table.png   MLflow: {settings.tracking_uri} (tag "
          f"{names.TAG_TABLE}={name})")
    return table


def tag_table(tracking_uri: str, run_id: str, name: str) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri).set_tag(run_id, names.TAG_TABLE, name)
