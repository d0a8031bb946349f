"""Step 2 of a sweep: the Tune run (fresh or restored) of a prepared sweep, with its searcher and scheduler.

Trials get everything through `tune.with_parameters` or their config, never through the environment: the
train/val split (no test ids), the shared data refs, the system-metrics sampling interval (the profile's
`monitoring` section; None when off), and whatever else the trainable asks for (the finetune gets the
tracking URI it fetches its baseline from).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from scolio_core.errors import ConfigError
from scolio_sweep.settings.profile import SweepProfile, define_search_space
from scolio_sweep.stages.prepare import SweepContext


def short_trial_name(trial) -> str:
    """Trial names/dirs like `train_baseline_1a2b3c4d` (Tune's default embeds the whole config)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def build_search(profile: SweepProfile, *, allow_rungs_before_decay: bool = False):
    """Seeded TPE over the conditional space (published defaults first) and successive halving on the sweep
    metric: batched and timing-independent by default (`budget.reproducible`), Ray's ASHA otherwise.

    Rungs before the last learning-rate decay are refused (`profiles.check_rungs_after_decay`);
    `allow_rungs_before_decay` is for benchmarks/search.py, which replays that older setting to compare.
    """
    import optuna
    from ray.tune.schedulers import ASHAScheduler

    from scolio_sweep.search.schedulers import BatchedSuccessiveHalving
    from scolio_sweep.search.searchers import BudgetAwareOptunaSearch
    from scolio_sweep.settings.profile import check_rungs_after_decay

    if not allow_rungs_before_decay:  # also a profile without an asha section
        check_rungs_after_decay(profile, f"profile {profile.name}")

    # Trials ASHA stops reach Optuna as PRUNED with their intermediate values, not as COMPLETE low scores.
    searcher = BudgetAwareOptunaSearch(space=define_search_space(profile), metric=profile.metric, mode=profile.mode,
                                       points_to_evaluate=list(profile.points_to_evaluate) or None,
                                       sampler=optuna.samplers.TPESampler(seed=profile.seed, n_startup_trials=
                                                                          max(2, min(10, profile.num_samples // 3))),
                                       budget=profile.evaluations_per_trial)
    if profile.budget.reproducible:
        scheduler = BatchedSuccessiveHalving(metric=profile.metric, mode=profile.mode,
                                             max_t=profile.evaluations_per_trial,
                                             grace_period=int(profile.asha.grace_period),
                                             reduction_factor=float(profile.asha.reduction_factor),
                                             batch_size=profile.max_concurrent_trials)
    else:
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=profile.evaluations_per_trial,
                                  grace_period=int(profile.asha.grace_period),
                                  reduction_factor=float(profile.asha.reduction_factor))
    return searcher, scheduler


def trial_param_space(context: SweepContext) -> dict[str, Any]:
    """The fixed part of every trial's config (the searcher fills in the rest); no partition."""
    flat = context.base_config.for_trial().to_flat()
    return {k: v for k, v in flat.items() if k not in context.profile.search}


def _resources(context: SweepContext):
    """Tune's request per trial: a resource dict, or for data-parallel trials (workers_per_trial > 1)
    the driver's bundle only — Ray Train reserves the workers' bundles itself (scolio_sweep/trainables/distributed.py)."""
    res = context.profile.resources
    if res.workers_per_trial > 1:
        from scolio_sweep.trainables.distributed import driver_resources

        return driver_resources()
    return {"cpu": float(res.cpus_per_trial), "gpu": float(res.gpus_per_trial)}


def _data_parallel(context: SweepContext, trainable: Callable) -> Callable:
    """`trainable`, or its data-parallel form when the profile asks for more than one worker per trial."""
    res = context.profile.resources
    if res.workers_per_trial <= 1:
        return trainable
    from scolio_sweep.trainables.baseline import train_baseline
    from scolio_sweep.trainables.distributed import data_parallel_trainable

    if trainable is not train_baseline:
        raise ConfigError(f"resources.workers_per_trial={res.workers_per_trial} is supported for the "
                          f"baseline trainable only, not {getattr(trainable, '__name__', trainable)!r}")
    return data_parallel_trainable(res.workers_per_trial, cpus_per_worker=float(res.cpus_per_trial),
                                   gpus_per_worker=float(res.gpus_per_trial))


def _share_data(context: SweepContext):
    """Load train+val once per loading key the search can produce and put it into Ray's object store."""
    from scolio_sweep.trainables.shared_data import loading_configs, share_trainval

    return share_trainval(loading_configs(context.base_config.for_trial(), context.profile.search),
                          context.trainval)


def run_trials(context: SweepContext, trainable: Callable, *, search_alg=None, scheduler=None,
               param_space: Mapping[str, Any] | None = None, num_samples: int | None = None,
               trainable_parameters: Mapping[str, Any] | None = None, batched: bool | None = None):
    """Fit the sweep (or resume it from its storage folder) and return Tune's ResultGrid.

    `batched` (default: the profile's `budget.reproducible`): the searcher suggests the next trials only when
    the whole batch has finished. A searcher that learns nothing (the confirmation's fixed list) needs no
    batches: its trials are the same in any order.
    """
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from scolio_sweep.engine.tuner import run_or_restore

    profile = context.profile
    if search_alg is not None:
        # batch: the next trials are suggested only when the whole batch has finished (reproducible sweeps)
        search_alg = ConcurrencyLimiter(search_alg, max_concurrent=profile.max_concurrent_trials,
                                        batch=profile.budget.reproducible if batched is None else batched)
    tune_config = tune.TuneConfig(
        metric=profile.metric, mode=profile.mode, search_alg=search_alg, scheduler=scheduler,
        num_samples=num_samples or profile.num_samples,
        max_concurrent_trials=None if search_alg is not None else profile.max_concurrent_trials,
        # A finished trial's worker hosts the next one: no new process, imports, numba cache load or mlflow
        # import per trial (Ray 2.60's default is False). Trials keep no state between runs: each seeds and
        # builds everything from its config, and the system-metrics thread stops with its trial.
        reuse_actors=True,
        trial_name_creator=short_trial_name, trial_dirname_creator=short_trial_name)
    run_config_kwargs = {"checkpoint_config": tune.CheckpointConfig(
        num_to_keep=2, checkpoint_score_attribute=profile.metric, checkpoint_score_order=profile.mode),
        "verbose": 1}
    # Built on every call, so a restored sweep (a new driver: the old refs are gone) re-puts its data and
    # hands this fresh with_parameters trainable to Tuner.restore.
    from scolio_core.tracking.ledger import ledger_provenance

    # Every checkpoint records the sweep's test ledger: `scolio eval` evaluates it there, or refuses.
    # (the confirmation stage runs under the Tune name "confirm": its sweep is the lifecycle's)
    sweep = getattr(context.lifecycle, "sweep_name", None) or context.name
    parameters: dict[str, Any] = {"split": context.trainval, "ledger": ledger_provenance(context.tracking_uri, sweep),
                                  "system_metrics_interval_s": profile.monitoring.trial_interval_s(),
                                  "select_metric": profile.metric,
                                  **(trainable_parameters or {})}
    if context.shared_data:
        parameters["shared"] = _share_data(context)
    return run_or_restore(tune.with_parameters(_data_parallel(context, trainable), **parameters),
                          name=context.name, storage_path=context.storage_path,
                          param_space=dict(param_space or trial_param_space(context)), tune_config=tune_config,
                          run_config_kwargs=run_config_kwargs, callbacks=[context.lifecycle],
                          resources=_resources(context))
