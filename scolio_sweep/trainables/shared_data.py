"""Train/val data loaded once by the sweep driver and shared by every trial through Ray's object store.

Without sharing, every trial process runs `load_trainval` itself: it reads the train+val pkls, imputes poses
(kNN, the slow part at release size) and keeps a private copy. With sharing, the driver loads each distinct
*loading key* once (modality, modality root, split fingerprint, and the knobs that change what is loaded:
`input.impute_neighbors` for poses, `model.name` for DRF's PAVs), `ray.put`s the `TrainValData`, and trials
receive the refs through `tune.with_parameters`:

    shared = share_trainval(loading_configs(base_config, profile.search), split.trainval())
    tune.with_parameters(train_baseline, split=split.trainval(), shared=shared)
    ...
    data = trial_data(experiment, split, shared)     # inside the trial

Ray stores numpy arrays out of band, so `ray.get` in a trial maps them zero-copy from the node's shared
memory: one copy per node, however many trials run there (a remote node fetches it once). The arrays are
read-only (marked so explicitly here too), so a trial that tried to write in place would fail loudly
instead of corrupting the others; the loop and batch code only ever index them into fresh arrays.

The driver loads only the `TrainValSplit`'s ids, as a trial would. A trial whose key was not pre-loaded (a
searched knob outside the enumerated values) loads for itself, as before, and says so in a log line.
Object refs die with the driver, so a resumed sweep shares afresh: `scolio_sweep.stages.run.run_trials` builds
the refs on every run and hands the new `with_parameters` trainable to `Tuner.restore`.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scolio_core.config import ExperimentConfig
from scolio_core.data.splits import TrainValSplit
from scolio_core.errors import ConfigError
from scolio_core.training.batches import TrainValData, load_trainval

logger = logging.getLogger(__name__)

# Config fields that change what `load_trainval` returns; every other knob (render, loss, train) does not.
LOADING_FIELDS = ("data.root", "data.pose_dir", "data.silhouette_dir", "input.representation",
                  "input.impute_neighbors", "model.name")
# An `int` range wider than this is not enumerated: only the base value is pre-loaded for it.
MAX_ENUMERATED_VALUES = 16


def _data_knobs(config: ExperimentConfig) -> list[str]:
    modality = config.input.modality
    knobs = [modality, str(config.data.modality_root(modality))]
    if modality == "skeleton":  # silhouettes are not imputed: the knob does not change them
        knobs.append(f"impute_neighbors={config.input.impute_neighbors}")
    knobs.append(f"pav={config.model.needs_pav}")
    return knobs


def loading_key(config: ExperimentConfig, split: TrainValSplit) -> str:
    """What identifies the loaded data: equal keys give identical `TrainValData`."""
    return "|".join([split.fingerprint[:16], *_data_knobs(config)])


def loading_configs(base: ExperimentConfig, search: Mapping[str, Any]) -> list[ExperimentConfig]:
    """One config per distinct loading key the search space can produce (base values elsewhere).

    `search` maps dotted keys to a profile's distributions (`scolio_sweep.settings.profile`); their `enumerate(limit)`
    gives the values one can produce, or None when they are too many (or continuous) to pre-load.
    """
    axes: dict[str, list] = {}
    for key in LOADING_FIELDS:
        if key not in search:
            continue
        values = search[key].enumerate(MAX_ENUMERATED_VALUES)
        if values is None:
            logger.warning("search.%s is not enumerable; only its base value %r is pre-loaded, trials with "
                           "other values load their data themselves", key, base.to_flat()[key])
            continue
        axes[key] = values
    configs: dict[tuple[str, ...], ExperimentConfig] = {}
    for combination in itertools.product(*axes.values()):
        try:
            config = base.replace(**dict(zip(axes, combination)))
        except ConfigError:  # e.g. DRF with silhouettes: such a trial fails on its own config, loads nothing
            continue
        configs.setdefault(tuple(_data_knobs(config)), config)
    return list(configs.values())


@dataclass(frozen=True)
class SharedData:
    """Object refs of pre-loaded `TrainValData`, by loading key (picklable: it travels to the trials)."""

    refs: dict[str, Any] = field(default_factory=dict)  # loading key -> ray.ObjectRef
    load_seconds: dict[str, float] = field(default_factory=dict)

    def __contains__(self, key: str) -> bool:
        return key in self.refs


def share_trainval(configs: Iterable[ExperimentConfig], split: TrainValSplit) -> SharedData:
    """Load each distinct key of `configs` once (train+val ids only) and put it into the object store."""
    import ray

    shared = SharedData()
    for config in configs:
        key = loading_key(config, split)
        if key in shared:
            continue
        start = time.perf_counter()
        data = load_trainval(config, split)
        shared.refs[key] = ray.put(data)
        shared.load_seconds[key] = time.perf_counter() - start
        nbytes = sum(a.nbytes for a in _arrays(data))
        del data  # the object store holds it now; the driver's own copy is not needed
        print(f"shared data: {key} loaded once in {shared.load_seconds[key]:.1f} s, "
              f"{nbytes / 2**20:.1f} MB in the Ray object store", flush=True)
    return shared


def _arrays(data: TrainValData) -> list[np.ndarray]:
    arrays = [data.train.frames, data.train.labels, data.train.offsets,
              data.val.frames, data.val.labels, data.val.offsets]
    return arrays + [a for a in (data.train_pav, data.val_pav) if a is not None]


def freeze(data: TrainValData) -> TrainValData:
    """Mark every array read-only (object-store arrays already are; this makes small inlined ones agree).

    numpy then refuses in-place writes; torch only warns (see `_refuse_torch_writes`). No warnings filter is
    touched here: a caller outside a trial (a test, a benchmark) keeps its own.
    """
    for array in _arrays(data):
        array.flags.writeable = False
    return data


def _refuse_torch_writes() -> None:
    """In this trial process, wrapping a read-only array with `torch.from_numpy` raises instead of warning.

    torch only warns there, and the tensor then writes straight into pages every trial on the node maps.
    The filter is this process's because the mapped arrays live as long as the trial, and a trial owns its
    actor process; a `with warnings.catch_warnings()` block would have to span the whole trial, in the
    trainables. torch emits the warning once per process, and the loop and batch
    code only wrap fresh copies, so the first one is the bug.
    """
    warnings.filterwarnings("error", message="The given NumPy array is not writable", category=UserWarning)


def trial_data(config: ExperimentConfig, split: TrainValSplit, shared: SharedData | None) -> TrainValData:
    """The trial's data: from the object store when the driver pre-loaded its key, else loaded here."""
    if shared is None:
        return load_trainval(config, split)
    key = loading_key(config, split)
    ref = shared.refs.get(key)
    if ref is None:
        logger.warning("shared data: %s was not pre-loaded by the sweep driver; this trial loads it itself",
                       key)
        return load_trainval(config, split)
    import ray

    data = ray.get(ref)
    if data.split.fingerprint != split.fingerprint:  # the key holds the fingerprint: an internal invariant
        raise AssertionError(f"shared data for {key} carries split {data.split.fingerprint}")
    _refuse_torch_writes()  # only where shared pages are mapped: data loaded by the trial itself is private
    return freeze(data)
