"""AdamW + cosine finetune sweep (lr, weight decay, warm-up, iterations), warm-started from the winner of a
representation sweep, then the finetune's own one-shot test.

    python sweeps/finetune.py --from-sweep demo                    # profile finetune_demo
    python sweeps/finetune.py --from-sweep <parent run id> --profile finetune_smoke --name ft-smoke

The finetune inherits the baseline's data contract: its input settings, model, data root, partition and
val carve come from the baseline checkpoint; only `train.*` fields come from the profile.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scolio_core.errors import ConfigError  # noqa: E402
from scolio_core.evaluation.contract import check_warm_start  # noqa: E402
from scolio_core.tracking import schema  # noqa: E402
from sweeps.cli import add_sweep_arguments, profile_from_args, run_sweep_cli, settings_from_args  # noqa: E402
from sweeps.finish import SweepOutcome, finish_sweep, print_summary  # noqa: E402
from sweeps.prepare import prepare_sweep  # noqa: E402
from sweeps.profiles import SweepProfile  # noqa: E402
from sweeps.run import build_search, run_trials  # noqa: E402


def find_baseline(tracking_uri: str, experiment: str, sweep_or_run: str) -> tuple[str, dict[str, str], str]:
    """(baseline child run id, parent tags, parent run id) of a representation sweep's selected trial."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ConfigError(f"--from-sweep: no MLflow experiment {experiment!r} in {tracking_uri}")
    parent = schema.find_parent_run(client, found.experiment_id, sweep_or_run)
    if parent is None:
        try:
            parent = client.get_run(sweep_or_run)
        except Exception:  # MLflow raises its own exception type for an unknown id
            raise ConfigError(f"--from-sweep {sweep_or_run!r}: no sweep of that name and no run with that id "
                              f"in {tracking_uri}") from None
    tags = parent.data.tags
    child = tags.get(schema.TAG_SELECTED_RUN_ID)
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


def run_finetune_sweep(args: argparse.Namespace) -> tuple[SweepOutcome, float]:
    profile = profile_from_args(args)  # a bad profile is refused before MLflow or Ray is even imported
    import mlflow

    from scolio_core.training.checkpoint import read_checkpoint

    settings = settings_from_args(args)
    tracking_uri = settings.tracking_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    child, parent_tags, parent_id = find_baseline(tracking_uri, settings.experiment, args.from_sweep)
    local = Path(mlflow.artifacts.download_artifacts(run_id=child, artifact_path=schema.ARTIFACT_CHECKPOINT,
                                                      tracking_uri=tracking_uri))
    baseline = read_checkpoint(local)
    profile = finetune_profile(profile, baseline.config.to_flat(), f"mlflow:{child}")
    # The trial-side contract holds no partition (trials never see one); the parent run records the file.
    settings = dataclasses.replace(
        settings, tracking_uri=tracking_uri, data_root=settings.data_root or parent_tags.get(schema.TAG_DATA_ROOT),
        partition=settings.partition or parent_tags.get(schema.TAG_PARTITION_FILE))
    context = prepare_sweep(profile, settings, kind="finetune")
    # Before compute, as every trial will: the baseline's contract (input, model, split) must hold.
    check_warm_start(baseline, context.base_config, context.trainval,
                     allow_change=context.base_config.train.allow_contract_change)
    baseline_val = float(parent_tags.get(schema.TAG_SELECTED_VAL_MACRO_F1, "nan"))
    context.lifecycle.tags.update({schema.TAG_BASELINE_SWEEP_RUN: parent_id, schema.TAG_BASELINE_RUN: child,
                                   schema.TAG_BASELINE_VAL_MACRO_F1: f"{baseline_val:.6f}"})
    from trainables.finetune import train_finetune

    search_alg, scheduler = build_search(context.profile)
    results = run_trials(context, train_finetune, search_alg=search_alg, scheduler=scheduler,
                         trainable_parameters={"tracking_uri": tracking_uri})
    outcome = finish_sweep(context, results, reopen_test=args.reopen_test)
    print_summary(context, outcome)
    print(f"  baseline (warm start) val macro-F1: {baseline_val:.4f}  ->  finetune val macro-F1: "
          f"{outcome.val.get(schema.METRIC_VAL_MACRO_F1, float('nan')):.4f}")
    return outcome, baseline_val


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_arguments(parser, default_profile="finetune_demo")
    parser.add_argument("--from-sweep", required=True, help="representation sweep name or its parent run id")
    return run_sweep_cli(run_finetune_sweep, parser.parse_args(argv), "finetune sweep")


if __name__ == "__main__":
    sys.exit(main())
