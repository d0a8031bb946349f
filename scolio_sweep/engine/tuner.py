"""The Tune driver: connect to Ray, then start a sweep or resume the one already in its storage folder.

Sweep scripts call these two functions and nothing else of Ray's driver API:

    connect_ray()                       # RAY_ADDRESS / `ray job submit` -> attach; else a private local Ray
    grid = run_or_restore(train_fn, name="repr-sweep", storage_path="/shared/ray_results",
                          param_space=space, tune_config=tune.TuneConfig(...),
                          run_config_kwargs={"checkpoint_config": ...}, callbacks=[lifecycle],
                          resources={"cpu": 1, "gpu": 0.5})

Running the same command again after a crash or a kill of the driver resumes the sweep: finished trials stay
finished, interrupted and errored trials continue from their latest checkpoints.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from ray import tune

from scolio_sweep.engine import ray_private

logger = logging.getLogger(__name__)

DEFAULT_MAX_FAILURES = 2


def connect_ray(address: str | None = None, num_cpus: int | None = None, *, temp_dir: str | None = None,
                include_dashboard: bool | None = None) -> None:
    """Attach to a running cluster, or start a private local Ray; a no-op when Ray is already up.

    `address` (or `RAY_ADDRESS`, which `ray job submit` sets for the driver it runs) selects a cluster.
    Without one we start a new local instance explicitly (`address="local"`): plain `ray.init()` would
    silently join whatever cluster `ray start` last left on this machine, e.g. someone else's.
    `num_cpus`, `temp_dir` and `include_dashboard` apply only to a local instance.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        if num_cpus is not None or temp_dir is not None:
            logger.warning("attaching to the Ray cluster at %s: num_cpus/temp_dir apply to local Ray only",
                           address)
        ray.init(address=address)
        return
    kwargs: dict[str, Any] = {"address": "local", "num_cpus": num_cpus}
    if temp_dir is not None:
        kwargs.update(ray_private.local_temp_dir_kwargs(temp_dir))
    if include_dashboard is not None:
        kwargs["include_dashboard"] = include_dashboard
    ray.init(**kwargs)


def experiment_path(storage_path: str, name: str) -> str:
    """Where Tune keeps the sweep `name`: a local absolute path, or a URI (s3://, gs://, ...)."""
    if "://" in storage_path:
        return f"{storage_path.rstrip('/')}/{name}"
    return str(Path(storage_path).expanduser().resolve() / name)


def run_or_restore(trainable: Callable | type, *, name: str, storage_path: str,
                   param_space: Mapping[str, Any], tune_config: tune.TuneConfig,
                   run_config_kwargs: Mapping[str, Any] | None = None,
                   callbacks: Sequence[tune.Callback] = (),
                   resources: Mapping[str, float] | Any | None = None) -> tune.ResultGrid:
    """Fit the sweep `name` under `storage_path`, resuming it when its experiment state exists there.

    A restore reuses the tuner state Tune saved (search algorithm, scheduler, trial states, run config)
    and only swaps in `callbacks` (so the caller's callback objects are the ones that run). Errored trials
    resume from their latest checkpoint instead of restarting. `run_config_kwargs` are extra
    `tune.RunConfig` fields; `failure_config` defaults to retrying a crashed trial twice.
    `resources` is a Tune resource dict (`{"cpu": 1, "gpu": 0.5}`) or a `PlacementGroupFactory`.
    """
    if resources:
        trainable = tune.with_resources(trainable, dict(resources) if isinstance(resources, Mapping)
                                        else resources)
    if "://" not in storage_path:
        storage_path = str(Path(storage_path).expanduser().resolve())
    path = experiment_path(storage_path, name)
    if tune.Tuner.can_restore(path):
        logger.info("resuming sweep %r from %s", name, path)
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                   restart_errored=False, param_space=dict(param_space))
        _replace_callbacks(tuner, callbacks)
    else:
        kwargs = dict(run_config_kwargs or {})
        kwargs.setdefault("failure_config", tune.FailureConfig(max_failures=DEFAULT_MAX_FAILURES))
        run_config = tune.RunConfig(name=name, storage_path=storage_path, callbacks=list(callbacks), **kwargs)
        tuner = tune.Tuner(trainable, param_space=dict(param_space), tune_config=tune_config,
                           run_config=run_config)
    return tuner.fit()


def _replace_callbacks(tuner: tune.Tuner, callbacks: Sequence[tune.Callback]) -> None:
    # Tuner.restore unpickles the callbacks saved with the first run; Ray has no public setter (see
    # ray_private). In Ray Client mode the pickled copies run, which MLflowLifecycle supports too (it
    # rebuilds its state from MLflow tags).
    if callbacks:
        ray_private.replace_restored_callbacks(tuner, callbacks)
