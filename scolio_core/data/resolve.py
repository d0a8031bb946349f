"""Driver-side data protocol: resolve the split for a config and validate the data before compute.

The driver (a sweep, `scolio train`, `scolio eval`) holds the full `Split`; trials get only its
`TrainValSplit`. Reading *test files* is left to `scolio_core.evaluation.lockbox`.
"""

from __future__ import annotations

from pathlib import Path

from scolio_core.config import ExperimentConfig
from scolio_core.data.release import index_release, validate_release
from scolio_core.data.splits import Split, carve_split, load_partition
from scolio_core.errors import ConfigError, DataError


def resolve_split(config: ExperimentConfig) -> Split:
    """Index the modality root, read the partition and carve val from TRAIN_SET (errors name files)."""
    if not config.data.root and not Path(config.data.partition).is_absolute():
        raise ConfigError("data.root is empty: point it at a Scoliosis1K release or run `scolio synth DIR` first")
    index = index_release(config.data.modality_root(config.input.modality))
    partition = load_partition(config.data.partition_path())
    root = config.data.modality_root(config.input.modality)
    missing = sorted((set(partition.train) | set(partition.test)) - set(index))
    if missing:
        raise DataError(f"{config.data.partition_path()}: {len(missing)} listed id(s) absent from {root} "
                        f"(e.g. {', '.join(missing[:5])})")
    labels = {seq_id: record.label for seq_id, record in index.items()}
    return carve_split(partition, labels, config.data.val_fraction, config.data.val_seed)


def validate_trainval(config: ExperimentConfig, split: Split) -> None:
    """Load and check every train and val file of the config's modality before any training starts."""
    root = config.data.modality_root(config.input.modality)
    validate_release(root, list(split.train) + list(split.val), config.input.modality)
