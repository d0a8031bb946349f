"""AdamW + cosine finetune sweep (lr, weight decay, warm-up, iterations), warm-started from the winner of a
representation sweep, then the finetune's own one-shot test.

    python sweeps/finetune.py --from-sweep demo                    # profile finetune_demo
    python sweeps/finetune.py --from-sweep <parent run id> --profile finetune_smoke --name ft-smoke

The finetune inherits the baseline's data contract: its input settings, model, data root, partition and
val carve come from the baseline checkpoint; only `train.*` fields come from the profile.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scolio_core.errors import ConfigError  # noqa: E402
from sweeps.common import (  # noqa: E402
    DEFAULT_EXPERIMENT,
    add_sweep_arguments,
    build_search,
    finish_sweep,
    prepare_sweep,
    print_summary,
    run_sweep_cli,
)
from sweeps.profiles import SweepProfile, apply_overrides, load_profile  # noqa: E402


def find_baseline(tracking_uri: str, experiment: str, sweep_or_run: str) -> tuple[str, dict[str, str], str]:
    """(baseline child run id, parent tags, parent run id) of a representation sweep's selected trial."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ConfigError(f"--from-sweep: no MLflow experiment {experiment!r} in {tracking_uri}")
    runs = client.search_runs([found.experiment_id], filter_string=(
        f"tags.`scolio.sweep` = '{sweep_or_run}' and tags.`scolio.role` = 'parent'"))
    if not runs:
        try:
            runs = [client.get_run(sweep_or_run)]
        except Exception:  # MLflow raises its own exception type for an unknown id
            raise ConfigError(f"--from-sweep {sweep_or_run!r}: no sweep of that name and no run with that id "
                              f"in {tracking_uri}") from None
    parent = runs[0]
    tags = parent.data.tags
    child = tags.get("scolio.selected_run_id")
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
    return SweepProfile(**{**profile.__dict__, "fixed": fixed})


def run_finetune_sweep(args: argparse.Namespace):
    import os

    import mlflow

    from scolio_core.training.checkpoint import read_checkpoint
    from trainables.finetune import train_finetune

    tracking_uri = args.tracking_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    args.tracking_uri = tracking_uri
    experiment = args.experiment or DEFAULT_EXPERIMENT
    child, parent_tags, parent_id = find_baseline(tracking_uri, experiment, args.from_sweep)
    local = Path(mlflow.artifacts.download_artifacts(run_id=child, artifact_path="checkpoint",
                                                      tracking_uri=tracking_uri))
    baseline = read_checkpoint(local)
    profile = apply_overrides(load_profile(args.profile), num_samples=args.num_samples,
                              gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
                              max_concurrent_trials=args.max_concurrent_trials)
    profile = finetune_profile(profile, baseline.config.to_flat(), f"mlflow:{child}")
    args.data_root = args.data_root or parent_tags.get("scolio.data_root")
    # The trial-side contract holds no partition (trials never see one); the parent run records the file.
    args.partition = args.partition or parent_tags.get("scolio.partition_file")
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    context = prepare_sweep(profile, args, kind="finetune")
    if baseline.split is not None and baseline.split.fingerprint != context.trainval.fingerprint:
        raise ConfigError(f"the data at {args.data_root} gives split {context.trainval.fingerprint[:12]}, the "
                          f"baseline was trained on {baseline.split.fingerprint[:12]}: its val ids would not be clean")
    baseline_val = float(parent_tags.get("scolio.selected_val_macro_f1", "nan"))
    context.callback.tags.update({"scolio.baseline_sweep_run": parent_id, "scolio.baseline_run": child,
                                  "scolio.baseline_val_macro_f1": f"{baseline_val:.6f}"})
    search_alg, scheduler = build_search(profile)
    results = context.fit(train_finetune, search_alg=search_alg, scheduler=scheduler)
    outcome = finish_sweep(context, results, reopen_test=args.reopen_test)
    print_summary(context, outcome)
    print(f"  baseline (warm start) val macro-F1: {baseline_val:.4f}  ->  finetune val macro-F1: "
          f"{outcome['val'].get('val/macro_f1', float('nan')):.4f}")
    return outcome, baseline_val


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_arguments(parser, default_profile="finetune_demo")
    parser.add_argument("--from-sweep", required=True, help="representation sweep name or its parent run id")
    return run_sweep_cli(run_finetune_sweep, parser.parse_args(argv), "finetune sweep")


if __name__ == "__main__":
    sys.exit(main())
