"""Every use of a private Ray API in the project, in one place.

Each function below reaches into Ray internals that have no public equivalent in the pinned Ray
(`ray[tune,default]==2.60.0`, pyproject.toml); each says which internal it uses and why. When the pin moves,
re-check this file against the new Ray and nothing else: the rest of the project uses public APIs only.

The library (scolio_core) never imports Ray, and scolio_sweep/trainables/ must not import sweeps/: a private API a trial
needs does not belong here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray import tune

RAY_VERSION = "2.60.0"  # the Ray every function below was checked against


def local_temp_dir_kwargs(temp_dir: str | Path) -> dict[str, str]:
    """`ray.init` keyword arguments that put a new local instance's files (sockets, logs) under `temp_dir`.

    Use a short path: Ray's unix socket paths live under it and the OS limits their length.
    """
    # Ray 2.60.0: `_temp_dir` is one of ray.init's "hidden / experimental options" (its docstring). The public
    # form, `ray start --temp-dir`, is CLI-only; a driver that starts its own local Ray has no other way to
    # choose the directory. Ray requires it absolute.
    return {"_temp_dir": str(Path(temp_dir).resolve())}


def replace_restored_callbacks(tuner: tune.Tuner, callbacks: Sequence[tune.Callback]) -> bool:
    """Make `callbacks` the ones a `Tuner.restore`d tuner runs; False in Ray Client mode, where it cannot.

    Raises RuntimeError when the installed Ray no longer has the internal this relies on, rather than
    silently running the stale callbacks unpickled from the first run.
    """
    # Ray 2.60.0: Tuner.restore takes no run_config or callbacks and unpickles the callbacks saved with the
    # first run; Tuner exposes no run config setter. Its TunerInternal, `Tuner._local_tuner`, returns the
    # live RunConfig from get_run_config(), which fit() reads afterwards. In Ray Client mode the tuner lives
    # in an actor (`Tuner._remote_tuner`) and its run config cannot be changed in place.
    internal = getattr(tuner, "_local_tuner", None)
    if internal is None:
        if getattr(tuner, "_remote_tuner", None) is not None:
            return False
        import ray

        raise RuntimeError(f"ray {ray.__version__}: Tuner has no _local_tuner; scolio_sweep/engine/ray_private.py was "
                           f"written for ray {RAY_VERSION}")
    internal.get_run_config().callbacks = list(callbacks)
    return True


def prepare_cluster_config(config: dict[str, Any]) -> dict[str, Any]:
    """A cluster YAML (parsed) as `ray up` prepares it, then checked by Ray's own validation; offline.

    Ray fills in its defaults for the provider, merges `setup_commands` in front of the head/worker ones and
    sets each node type's worker bounds. Raises what Ray raises for an invalid config.
    """
    # Ray 2.60.0: ray.autoscaler._private.util.prepare_config/validate_config. The public (DeveloperAPI)
    # ray.autoscaler.sdk.bootstrap_config also runs the provider's bootstrap (for AWS: calls to AWS), and
    # sdk.fillout_defaults neither merges the setup commands nor validates.
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(config)
    validate_config(prepared)
    return prepared
