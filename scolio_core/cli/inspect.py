"""Check a data root against a partition and print class counts and frame statistics.

Run: scolio inspect /data/Scoliosis1K --partition Scoliosis1K_118.json --modality skeleton

ROOT holds the pose and silhouette roots (DataConfig.pose_dir / silhouette_dir) or is a modality root
itself. Every listed file is loaded and checked (one error lists all bad files); then the val carve that
training would use is made and class counts per train / val / test are printed with frame statistics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from scolio_core import CLASS_NAMES
from scolio_core.config import DataConfig
from scolio_core.data.release import (
    MODALITIES,
    frame_statistics,
    index_release,
    resolve_modality_root,
    sequence_lengths,
)
from scolio_core.data.splits import carve_split, load_partition
from scolio_core.errors import ConfigError, DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = DataConfig()
    parser.add_argument("root", type=Path, metavar="ROOT", help="data root (or a modality root)")
    parser.add_argument("--partition", required=True, type=Path, metavar="FILE.json",
                        help="partition JSON (a path, or a file name under ROOT)")
    parser.add_argument("--modality", choices=MODALITIES, default="skeleton",
                        help="which root to read: poses or silhouettes (default skeleton)")
    parser.add_argument("--val-fraction", type=float, default=defaults.val_fraction,
                        help="fraction of TRAIN_SET carved as validation (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.val_seed,
                        help="seed of the val carve (default %(default)s)")


def _partition_path(root: Path, partition: Path) -> Path:
    if partition.is_file() or partition.is_absolute():
        return partition
    under_root = root / partition
    if under_root.is_file():
        return under_root
    raise DataError(f"{partition}: partition file not found (also looked in {root})")


def build_tables(root: Path, partition_path: Path, modality: str, val_fraction: float,
                 seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate the release and return (class counts, frame statistics), one row per subset."""
    modality_root = resolve_modality_root(root, modality)
    partition = load_partition(partition_path)
    index = index_release(modality_root)
    lengths = sequence_lengths(modality_root, partition.train + partition.test, modality, index)
    split = carve_split(partition, {i: r.label for i, r in index.items()}, val_fraction, seed)
    subsets = {"train": split.train, "val": split.val, "test": split.test}

    counts = pd.DataFrame(
        [[sum(index[i].label == c for i in ids) for c in range(len(CLASS_NAMES))] for ids in subsets.values()],
        index=list(subsets), columns=list(CLASS_NAMES))
    counts["total"] = counts.sum(axis=1)
    counts.loc["all"] = counts.sum(axis=0)

    frames = pd.DataFrame([frame_statistics([lengths[i] for i in ids]) for ids in subsets.values()]
                          + [frame_statistics(list(lengths.values()))], index=list(subsets) + ["all"])
    return counts, frames


def run(args: argparse.Namespace) -> int:
    if not 0.0 < args.val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    partition_path = _partition_path(args.root, args.partition)
    counts, frames = build_tables(args.root, partition_path, args.modality, args.val_fraction, args.seed)
    print(f"{partition_path.stem} / {args.modality} / val_fraction={args.val_fraction} seed={args.seed}: "
          f"all {int(counts.loc['all', 'total'])} listed sequences load and validate")
    print("\nclass counts")
    print(counts.to_string())
    print("\nframes per sequence")
    print(frames.to_string(float_format=lambda v: f"{v:g}"))
    return 0
