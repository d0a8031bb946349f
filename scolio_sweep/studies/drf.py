"""DRF vs its `use_pga: false` control (ScoNet-MT-ske) under identical budgets and seeds, reporting the
paired val difference with its uncertainty; the winner then gets the sweep's one-shot test.

    python sweeps/drf.py --profile drf_smoke         # the entry script; this module is the study

The profile's `search` entries are all `choice` lists and are crossed as a grid (every seed runs both arms);
no early stopping, so both arms get exactly the same budget.
"""

from __future__ import annotations

import numpy as np

from scolio_core import names
from scolio_core.errors import ConfigError
from scolio_sweep.search.space import Choice
from scolio_sweep.settings.profile import SweepProfile
from scolio_sweep.settings.run_settings import SweepSettings
from scolio_sweep.stages.finish import finish_sweep, print_summary
from scolio_sweep.stages.prepare import prepare_sweep
from scolio_sweep.stages.run import run_trials, trial_param_space


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


def run_drf_comparison(profile: SweepProfile, settings: SweepSettings) -> dict:
    if set(profile.search) != {"model.use_pga", "train.seed"} or not all(
            isinstance(d, Choice) for d in profile.search.values()):
        raise ConfigError(f"DRF profile {profile.name}: search must be exactly model.use_pga and train.seed "
                          f"choices, got {profile.search_specs()}")
    if profile.base_config().model.name != "drf":
        raise ConfigError(f"DRF profile {profile.name}: fixed model.name must be drf")
    context = prepare_sweep(profile, settings, kind="drf")
    from ray import tune

    from scolio_sweep.trainables.baseline import train_baseline

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
    outcome = finish_sweep(context, results, reopen_test=settings.reopen_test)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(context.tracking_uri)
    client.log_metric(context.parent_run_id, names.METRIC_PAIRED_DIFF_MEAN, diff["mean"])
    client.log_metric(context.parent_run_id, names.METRIC_PAIRED_DIFF_CI_LOW, diff["ci_low"])
    client.log_metric(context.parent_run_id, names.METRIC_PAIRED_DIFF_CI_HIGH, diff["ci_high"])
    print_summary(context, outcome)
    print(f"  DRF − control (val macro-F1, paired over {diff['n']} seeds): {diff['mean']:+.4f} "
          f"[95 % bootstrap CI {diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}], DRF better in {diff['drf_wins']}/{diff['n']}")
    for seed, value in diff["per_seed"].items():
        print(f"    seed {seed}: {value:+.4f}")
    return diff
