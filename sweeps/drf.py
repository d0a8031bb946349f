"""DRF vs its `use_pga: false` control (ScoNet-MT-ske) under identical budgets and seeds, reporting the
paired val difference with its uncertainty; the winner then gets the sweep's one-shot test.

    python sweeps/drf.py --profile drf_smoke
    python sweeps/drf.py                             # drf_demo profile

The profile's `search` entries are all `choice` lists and are crossed as a grid (every seed runs both arms);
no early stopping, so both arms get exactly the same budget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from scolio_core.errors import ConfigError  # noqa: E402
from sweeps.cli import add_sweep_arguments, profile_from_args, run_sweep_cli, settings_from_args  # noqa: E402
from sweeps.finish import finish_sweep, print_summary  # noqa: E402
from sweeps.prepare import prepare_sweep  # noqa: E402
from sweeps.profiles import Choice  # noqa: E402
from sweeps.run import run_trials, trial_param_space  # noqa: E402


def paired_difference(rows: list[dict], metric: str, n_resamples: int = 10000, seed: int = 0) -> dict:
    """Per-seed best-val difference DRF − control: mean, bootstrap 95 % CI over seeds, wins."""
    by_seed: dict[int, dict[bool, float]] = {}
    for row in rows:
        by_seed.setdefault(int(row["train.seed"]), {})[bool(row["model.use_pga"])] = float(row[metric])
    paired = {s: arms[True] - arms[False] for s, arms in sorted(by_seed.items()) if len(arms) == 2}
    if not paired:
        raise ConfigError("no seed finished both arms; cannot pair DRF with its control")
    diffs = np.asarray(list(paired.values()))
    rng = np.random.default_rng(seed)
    boot = rng.choice(diffs, size=(n_resamples, len(diffs)), replace=True).mean(axis=1)
    return {"per_seed": paired, "mean": float(diffs.mean()), "ci_low": float(np.percentile(boot, 2.5)),
            "ci_high": float(np.percentile(boot, 97.5)), "drf_wins": int((diffs > 0).sum()), "n": len(diffs),
            "sd": float(diffs.std(ddof=1)) if len(diffs) > 1 else float("nan")}


def run_drf_comparison(args: argparse.Namespace) -> dict:
    profile = profile_from_args(args)  # a bad profile is refused before Ray is even imported
    if set(profile.search) != {"model.use_pga", "train.seed"} or not all(
            isinstance(d, Choice) for d in profile.search.values()):
        raise ConfigError(f"DRF profile {profile.name}: search must be exactly model.use_pga and train.seed "
                          f"choices, got {profile.search_specs()}")
    if profile.base_config().model.name != "drf":
        raise ConfigError(f"DRF profile {profile.name}: fixed model.name must be drf")
    context = prepare_sweep(profile, settings_from_args(args), kind="drf")
    from ray import tune

    from trainables.baseline import train_baseline

    space = trial_param_space(context)
    for key, choice in profile.search.items():
        space[key] = tune.grid_search(list(choice.values))
    results = run_trials(context, train_baseline, param_space=space, num_samples=1)
    rows = []
    for result in results:
        if result.error is not None or result.metrics_dataframe is None:
            continue
        best = result.metrics_dataframe[profile.metric].max()
        rows.append({"train.seed": result.config["train.seed"], "model.use_pga": result.config["model.use_pga"],
                     profile.metric: best})
    diff = paired_difference(rows, profile.metric)
    outcome = finish_sweep(context, results, reopen_test=args.reopen_test)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(context.tracking_uri)
    client.log_metric(context.parent_run_id, "paired/val_macro_f1_diff_mean", diff["mean"])
    client.log_metric(context.parent_run_id, "paired/val_macro_f1_diff_ci_low", diff["ci_low"])
    client.log_metric(context.parent_run_id, "paired/val_macro_f1_diff_ci_high", diff["ci_high"])
    print_summary(context, outcome)
    print(f"  DRF − control (val macro-F1, paired over {diff['n']} seeds): {diff['mean']:+.4f} "
          f"[95 % bootstrap CI {diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}], DRF better in {diff['drf_wins']}/{diff['n']}")
    for seed, value in diff["per_seed"].items():
        print(f"    seed {seed}: {value:+.4f}")
    return diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_arguments(parser, default_profile="drf_demo")
    return run_sweep_cli(run_drf_comparison, parser.parse_args(argv), "drf comparison")


if __name__ == "__main__":
    sys.exit(main())
