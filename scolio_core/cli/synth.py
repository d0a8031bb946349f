"""Write a synthetic Scoliosis1K stand-in (pose + silhouette roots, partitions) to a directory.

    scolio synth data/synth                       # 300 sequences x 40 frames, 1:1:8 split, seed 0
    scolio synth data/synth --num-sequences 40 --train-ratio 1:1:2 --force
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scolio_core.data.synth import parse_ratio, synthesize
from scolio_core.errors import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, metavar="OUT",
                        help="directory to write (must be empty or absent unless --force)")
    parser.add_argument("--num-sequences", type=int, default=300, metavar="N",
                        help="number of sequence ids (default 300)")
    parser.add_argument("--frames", type=int, default=40, metavar="T", help="frames per sequence (default 40)")
    parser.add_argument("--train-ratio", default="1:1:8", metavar="P:N:NEG",
                        help="training-set class ratio positive:neutral:negative (default 1:1:8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, byte-identical files (default 0)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty directory, replacing its pose and silhouette roots")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    ratio = parse_ratio(args.train_ratio)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise DataError(f"{out} is not empty; nothing was written (pass --force to replace its "
                        "Scoliosis1K-pose-pkl and Scoliosis1K-sil-pkl folders, or choose an empty directory)")
    started = time.perf_counter()
    summary = synthesize(out, num_sequences=args.num_sequences, frames=args.frames, train_ratio=ratio,
                         seed=args.seed, progress=not args.quiet, overwrite=args.force)
    print(summary.format())
    print(f"written in {time.perf_counter() - started:.1f} s")
    return 0
