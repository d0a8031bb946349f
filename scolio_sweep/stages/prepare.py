"""Step 1 of a sweep: resolve and check everything before compute, then start Ray and the MLflow lifecycle.

Order is the point: data files (every modality the search can pick, test files included), the partition,
the tracking store and the storage path are all checked before the first trial starts, and Ray and MLflow
are imported only after the data checks, so refusing bad input never waits for them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from scolio_core import names
from scolio_core.config import ExperimentConfig
from scolio_core.data.splits import Split, TrainValSplit
from scolio_core.data.stand_in import synthetic_root
from scolio_core.errors import ConfigError, LockboxError
from scolio_core.tracking import lookups
from scolio_core.tracking.guard import check_sweep_split
from scolio_core.tracking.store import resolve_tracking_uri
from scolio_sweep.engine.storage import check_replaceable
from scolio_sweep.settings.profile import SweepProfile
from scolio_sweep.settings.run_settings import (
    MAX_DERIVED_NAME_LENGTH,
    SweepSettings,
    check_name,
    check_output_dirs,
    local_dir,
)

WINNER_CHECKPOINT_DIR = "winner_checkpoint"  # under the work dir: the selected checkpoint, copied locally


@dataclass
class SweepContext:
    """A prepared sweep: what `run.run_trials` and `finish.finish_sweep` need, all checked."""

    name: str
    kind: str  # representation | finetune | drf
    profile: SweepProfile
    base_config: ExperimentConfig  # the profile's fixed fields + data root/partition (the driver's view)
    split: Split
    tracking_uri: str
    experiment: str
    storage_path: str
    results_dir: Path
    work_dir: Path
    oracle_macro_f1: float | None  # synthetic data: the severity oracle on this split's test ids
    lifecycle: object  # scolio_sweep.engine.callbacks.MLflowLifecycle (imported with Ray, after the data checks)
    shared_data: bool = True
    oracle_val_macro_f1: float | None = None  # ... and on its val ids: what a val number is compared with

    @property
    def trainval(self) -> TrainValSplit:
        return self.split.trainval()

    @property
    def parent_run_id(self) -> str:
        if getattr(self.lifecycle, "parent_run_id", None):
            return self.lifecycle.parent_run_id
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(self.experiment)
        parent = lookups.find_parent_run(client, experiment.experiment_id, self.name) if experiment else None
        if parent is None:
            raise LockboxError(f"no MLflow parent run for sweep {self.name!r} in {self.tracking_uri}")
        return parent.info.run_id


def check_tracking_uri(tracking_uri: str) -> None:
    """Fail before compute when MLflow cannot be reached."""
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=10).read()
        except (urllib.error.URLError, OSError) as exc:
            raise ConfigError(f"MLflow tracking URI {tracking_uri} cannot be reached ({exc}); start the server "
                              "(mlflow server ...) or pass another --tracking-uri") from None
    try:
        MlflowClient(tracking_uri).search_experiments(max_results=1)
    except Exception as exc:  # MLflow raises many types for a bad store; all mean "unusable"
        raise ConfigError(f"MLflow tracking URI {tracking_uri} is not usable: {exc}") from None


def resolve_data(profile: SweepProfile, settings: SweepSettings) -> SweepProfile:
    """The profile with `data.root` (and `data.partition` when given) fixed."""
    fixed = dict(profile.fixed)
    if settings.data_root:
        root = Path(settings.data_root).expanduser().resolve()
    else:
        root = synthetic_root(profile.synth, Path(settings.cache_dir) if settings.cache_dir else None)
    fixed["data.root"] = str(root)
    if settings.partition:
        given = Path(settings.partition).expanduser()
        fixed["data.partition"] = str(given.resolve()) if given.exists() else settings.partition
    return profile.replace(fixed=fixed)


def split_oracles(profile: SweepProfile, split: Split) -> tuple[float | None, float | None]:
    """(val, test) severity-oracle macro-F1 of a synthetic stand-in on this split's own ids; None for real data.
    Each ceiling goes beside the number measured on the same ids."""
    from scolio_core.data.synth import oracle_macro_f1

    root = profile.base_config().data.root
    return oracle_macro_f1(root, split.val), oracle_macro_f1(root, split.test)


def check_data(profile: SweepProfile) -> Split:
    """Resolve the split and check every train/val/test file of every modality the search can pick."""
    from scolio_core.data.resolve import resolve_split, validate_trainval
    from scolio_core.evaluation.lockbox import validate_test_files

    base = profile.base_config()
    split = None
    modalities = sorted({base.replace(**{"input.representation": r}).input.modality
                         for r in profile.representations()})
    for modality in modalities:
        config = base.replace(**{"input.representation": "silhouette" if modality == "silhouette" else "body-only"})
        this = resolve_split(config)
        if split is not None and this.fingerprint != split.fingerprint:
            raise ConfigError(f"pose and silhouette roots under {base.data.root} give different splits "
                              f"({split.fingerprint[:12]} vs {this.fingerprint[:12]}): ids or classes differ")
        split = this
        validate_trainval(config, split)
        validate_test_files(config, split)
    if not split.test:  # the sweep ends in a test look: an empty TEST_SET would spend the compute for nothing
        raise ConfigError(f"{split.partition}: TEST_SET is empty; a sweep ends with its one test look")
    return split


def parent_params(profile: SweepProfile, kind: str) -> dict[str, object]:
    """The sweep's settings as parent-run params: a resumed sweep must match them exactly."""
    params: dict[str, object] = {f"{names.PARAM_SEARCH_PREFIX}{k}": json.dumps(v)
                                 for k, v in profile.search_specs().items()}
    for prefix, section in ((names.PARAM_BUDGET_PREFIX, profile.budget), (names.PARAM_ASHA_PREFIX, profile.asha),
                            (names.PARAM_RESOURCES_PREFIX, profile.resources),
                            (names.PARAM_CONFIRM_PREFIX, profile.confirm)):
        params.update({f"{prefix}{k}": v for k, v in asdict(section).items()})
    params[names.PARAM_SWEEP_KIND] = kind
    return params


def parent_tags(profile: SweepProfile, split: Split, kind: str, oracles: tuple[float | None, float | None]
                ) -> dict[str, str]:
    base = profile.base_config()
    tags = {names.TAG_PROFILE: profile.name, names.TAG_SELECTION_SPLIT: "val",
            names.TAG_SPLIT_FINGERPRINT: split.fingerprint,
            names.TAG_TRAINVAL_FINGERPRINT: split.trainval().fingerprint, names.TAG_PARTITION: split.partition,
            names.TAG_PARTITION_FILE: str(base.data.partition_path().resolve()),
            names.TAG_DATA_ROOT: str(base.data.root), names.TAG_KIND: kind}
    for tag, oracle in zip((names.TAG_ORACLE_VAL_MACRO_F1, names.TAG_ORACLE_MACRO_F1), oracles):
        if oracle is not None:
            tags[tag] = f"{oracle:.4f}"
    tags.update({f"{names.TAG_MONITORING_PREFIX}{k}": str(v).lower() if isinstance(v, bool) else str(v)
                 for k, v in asdict(profile.monitoring).items()})
    return tags


def work_dir_for(storage_path: str, name: str) -> Path:
    """Where the driver keeps its local copies (the winner's checkpoint): beside the trials on local storage."""
    local = local_dir(storage_path)
    return local / name if local is not None else Path.cwd() / ".scolio_work" / name


def prepare_sweep(profile: SweepProfile, settings: SweepSettings, kind: str) -> SweepContext:
    """Check data, tracking and storage before compute; start/attach Ray; set up the MLflow lifecycle."""
    # Names become folders and the results/storage folders must not overlap: checked here too for callers
    # that build settings without the command line. Folders finish.py rewrites whole must be scoliotune's.
    name = check_name(settings.name or profile.name, "sweep name", max_length=MAX_DERIVED_NAME_LENGTH)
    lookups.quote(name, "sweep name")
    check_output_dirs(settings.storage_root(), settings.results_dir)
    check_replaceable(Path(settings.results_dir) / name, "this sweep's results")
    winner = work_dir_for(settings.storage_root(), name) / WINNER_CHECKPOINT_DIR
    if os.path.lexists(winner):  # a checkpoint's own marker decides (and torch is imported only then)
        import scolio_core.training.ensemble  # noqa: F401  (registers ensembles: the winner may be one)
        from scolio_core.training.checkpoint import ensure_replaceable

        ensure_replaceable(winner)
    profile = resolve_data(profile, settings)
    split = check_data(profile)
    oracles = split_oracles(profile, split)

    from scolio_sweep.engine.callbacks import MLflowLifecycle
    from scolio_sweep.engine.storage import check_storage_path, count_alive_nodes
    from scolio_sweep.engine.tuner import connect_ray

    tracking_uri = resolve_tracking_uri(settings.tracking_uri)
    check_tracking_uri(tracking_uri)
    # Before Ray: a re-run on another split is refused; train/val ids that are test ids of a study in the
    # ledger are refused (its own) or recorded as this study's look (another's). scolio_core/tracking/guard.py
    check_sweep_split(tracking_uri, settings.experiment, name, split, kind=kind,
                      init_from=str(profile.fixed.get("train.init_from", "")),
                      data_root=str(profile.base_config().data.root))
    connect_ray()
    storage_path = check_storage_path(settings.storage_root(), count_alive_nodes())
    from scolio_core.tracking.lineage import split_refs

    trainval = split.trainval()  # trials log what they see: train and val with the split's fingerprint, never test
    lifecycle = MLflowLifecycle(tracking_uri, settings.experiment, name, metric=profile.metric, mode=profile.mode,
                                params={**parent_params(profile, kind), names.PARAM_SPLIT_FINGERPRINT: split.fingerprint},
                                tags=parent_tags(profile, split, kind, oracles),
                                budget=profile.evaluations_per_trial, searched=tuple(profile.search),
                                datasets=split_refs(trainval.partition, trainval.fingerprint,
                                                    str(profile.base_config().data.root), trainval.train, trainval.val))
    work_dir = work_dir_for(storage_path, name)
    return SweepContext(name=name, kind=kind, profile=profile, base_config=profile.base_config(), split=split,
                        tracking_uri=tracking_uri, experiment=settings.experiment, storage_path=storage_path,
                        results_dir=Path(settings.results_dir) / name, work_dir=work_dir, oracle_macro_f1=oracles[1],
                        lifecycle=lifecycle, shared_data=settings.shared_data, oracle_val_macro_f1=oracles[0])
