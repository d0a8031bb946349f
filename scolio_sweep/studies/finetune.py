"""AdamW + cosine finetune sweep (lr, weight decay, warm-up, iterations), warm-started from the winner of a
representation sweep: the second stage of that sweep's study.

    python sweeps/representation.py --defer-test && python sweeps/finetune.py --from-sweep demo
    python sweeps/representation.py --finetune-profile finetune_demo          # the same study in one command
    python sweeps/finetune.py --from-sweep <parent run id> --profile finetune_smoke --name ft-smoke

The finetune inherits the baseline's data contract: its input settings, model, data root, partition and
val carve come from the baseline checkpoint; only `train.*` fields come from the profile.

The study opens its test set once, after its last stage. When the baseline sweep deferred its test, this
stage compares its winner with the baseline on the same val ids and tests the better one (a finetune that
does not beat its baseline leaves the baseline as the study's model). When the baseline already looked,
this stage is selected on val and reported without a test, unless --reopen-test (labelled REOPENED).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from scolio_core import names
from scolio_core.errors import ConfigError
from scolio_core.evaluation.contract import check_warm_start
from scolio_core.tracking import lookups
from scolio_core.tracking.store import resolve_tracking_uri
from scolio_sweep.settings.profile import SweepProfile
from scolio_sweep.settings.run_settings import SweepSettings
from scolio_sweep.stages.finish import (
    SweepOutcome,
    choose_final,
    open_test,
    outcome_of,
    print_summary,
    register_model,
    select,
    write_results,
)
from scolio_sweep.stages.prepare import prepare_sweep
from scolio_sweep.stages.run import build_search, run_trials


def find_baseline(tracking_uri: str, experiment: str, sweep_or_run: str) -> tuple[str, dict[str, str], str]:
    """(baseline child run id, parent tags, parent run id) of a representation sweep's selected trial."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ConfigError(f"--from-sweep: no MLflow experiment {experiment!r} in {tracking_uri}")
    parent = lookups.find_parent_run(client, found.experiment_id, sweep_or_run)
    if parent is None:
        try:
            parent = client.get_run(sweep_or_run)
        except Exception:  # MLflow raises its own exception type for an unknown id
            raise ConfigError(f"--from-sweep {sweep_or_run!r}: no sweep of that name and no run with that id "
                              f"in {tracking_uri}") from None
    tags = parent.data.tags
    child = tags.get(names.TAG_SELECTED_RUN_ID)
    if not child:
        raise ConfigError(f"--from-sweep {sweep_or_run!r}: the sweep has no selected baseline yet "
                          "(did it finish its search?)")
    return child, tags, parent.info.run_id


def finetune_profile(profile: SweepProfile, baseline_config: dict, init_from: str) -> SweepProfile:
    """Fixed config = the baseline's contract (data, input, model, loss) + the profile's train.* fields."""
    stray = sorted(k for k in list(profile.fixed) + list(profile.search) if not k.startswith("train."))
    if stray:
        raise ConfigError(f"finetune profile {profile.name}: only train.* fields may be set or searched "
                          f"(the rest is the baseline's contract), got {stray}")
    fixed = {k: v for k, v in baseline_config.items() if not k.startswith("train.")}
    for key in ("train.batch_ids", "train.batch_samples", "train.frames", "train.max_eval_frames",
                "train.eval_batch_size", "train.device", "train.sampler", "train.seed"):
        fixed[key] = baseline_config[key]
    fixed.update(profile.fixed)
    fixed["train.init_from"] = init_from
    return profile.replace(fixed=fixed)


def run_finetune_stage(profile: SweepProfile, settings: SweepSettings, from_sweep: str,
                       reopen_test: bool = False) -> tuple[SweepOutcome, float]:
    """The finetune stage of the study `from_sweep` belongs to; returns its outcome and the baseline's val."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from scolio_core.training.checkpoint import read_checkpoint

    tracking_uri = resolve_tracking_uri(settings.tracking_uri)
    child, parent_tags, parent_id = find_baseline(tracking_uri, settings.experiment, from_sweep)
    study = parent_tags.get(names.TAG_STUDY) or parent_tags.get(names.TAG_SWEEP) or from_sweep
    # The study's look is still to come when its baseline deferred it and no finetune stage has taken it.
    study_open = (parent_tags.get(names.TAG_TEST_DEFERRED) == "true"
                  and names.TAG_STUDY_FINAL_PARENT not in parent_tags)
    if not study_open and not reopen_test:
        print(f"note: study {study!r} already opened its test set; this finetune is selected on val and reported "
              "without a test look (pass --reopen-test to look again, labelled REOPENED)")
    local = Path(mlflow.artifacts.download_artifacts(run_id=child, artifact_path=names.ARTIFACT_CHECKPOINT,
                                                      tracking_uri=tracking_uri))
    baseline = read_checkpoint(local)
    profile = finetune_profile(profile, baseline.config.to_flat(), f"mlflow:{child}")
    # The trial-side contract holds no partition (trials never see one); the parent run records the file.
    settings = dataclasses.replace(
        settings, tracking_uri=tracking_uri, data_root=settings.data_root or parent_tags.get(names.TAG_DATA_ROOT),
        partition=settings.partition or parent_tags.get(names.TAG_PARTITION_FILE))
    context = prepare_sweep(profile, settings, kind="finetune")
    # Before compute, as every trial will: the baseline's contract (input, model, split) must hold.
    check_warm_start(baseline, context.base_config, context.trainval,
                     allow_change=context.base_config.train.allow_contract_change)
    # The exact selected value (the baseline parent's metric): the tag is rounded to 6 decimals, so on a tie
    # (frequent on a small val set) the finetune would win by the rounding, against choose_final's rule.
    baseline_val = MlflowClient(tracking_uri).get_run(parent_id).data.metrics.get(
        names.METRIC_VAL_MACRO_F1, float(parent_tags.get(names.TAG_SELECTED_VAL_MACRO_F1, "nan")))
    context.lifecycle.tags.update({names.TAG_BASELINE_SWEEP_RUN: parent_id, names.TAG_BASELINE_RUN: child,
                                   names.TAG_BASELINE_VAL_MACRO_F1: f"{baseline_val:.6f}", names.TAG_STUDY: study})
    from scolio_sweep.trainables.finetune import train_finetune

    search_alg, scheduler = build_search(context.profile)
    results = run_trials(context, train_finetune, search_alg=search_alg, scheduler=scheduler,
                         trainable_parameters={"tracking_uri": tracking_uri})
    selection = select(context, results)
    result, stage = None, ""
    if study_open or reopen_test:
        finetune_val = selection.val.get(context.profile.metric, float("nan"))
        stage = choose_final(baseline_val, finetune_val) if study_open else "finetune"
        final_dir, final_parent = ((selection.checkpoint, context.parent_run_id) if stage == "finetune"
                                   else (local, parent_id))
        result = open_test(context, final_dir, study=study, mirror_run_id=final_parent, reopen_test=reopen_test)
        client = MlflowClient(tracking_uri)
        for run_id in (parent_id, context.parent_run_id):
            client.set_tag(run_id, names.TAG_STUDY_FINAL_PARENT, final_parent)
        if final_parent == parent_id:  # the baseline's own results now show the study's test row
            from scolio_core.tracking.report import build_report

            build_report(tracking_uri, parent_tags.get(names.TAG_SWEEP, from_sweep),
                         Path(settings.results_dir) / parent_tags.get(names.TAG_SWEEP, from_sweep),
                         experiment=settings.experiment)
    write_results(context)
    model_uri = ""
    if result is not None:  # the study's look is complete: register the model it tested (both stages point to it)
        model_uri = register_model(context, final_dir, result, study=study, parent_run_id=final_parent,
                                   also_tag=(parent_id, context.parent_run_id))
    outcome = outcome_of(context, selection, result, final_stage=stage, model_uri=model_uri)
    print_summary(context, outcome)
    return outcome, baseline_val


def print_study(outcome: SweepOutcome, baseline_val: float) -> None:
    finetune_val = outcome.val.get(names.METRIC_VAL_MACRO_F1, float("nan"))
    print(f"\nstudy stage 2 (finetune {outcome.name}): baseline val macro-F1 {baseline_val:.4f} -> finetune val "
          f"macro-F1 {finetune_val:.4f}")
    if outcome.deferred:
        print("  no test look in this stage (the study's baseline already looked; --reopen-test to look again)")
        return
    label = "REOPENED test" if outcome.reopened else "one-shot test"
    print(f"  the study's model: the {outcome.final_stage} (selected on val); {label}: macro-F1 "
          f"{outcome.test.get(names.METRIC_TEST_MACRO_F1, float('nan')):.4f}  accuracy "
          f"{outcome.test.get(names.METRIC_TEST_ACCURACY, float('nan')):.4f}  "
          f"(n per class {outcome.test_counts})")
    if outcome.seen_before:
        print(f"  note: this test set had been looked at {outcome.seen_before} time(s) before this study")
