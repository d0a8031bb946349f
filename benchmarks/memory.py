"""Peak resident memory of a trial process at demo size and at the real release's size.

Run: python benchmarks/memory.py                # ~2 min: demo size and release size, poses and silhouettes
     python benchmarks/memory.py --full-synth   # synthesise all 1,493 x 300 frames instead (~4 min, ~2 GB disk)

Each measurement is a fresh subprocess doing what a trial does: `load_trainval` (train + val ids of one
modality into memory, poses imputed) and a few optimiser steps of the demo profile's model and batch
(plus the loop's final evaluation); it reports its RSS after loading and its peak RSS (ru_maxrss).

Demo size is the demo profile's synthetic stand-in (240 x 32 frames). Release size is 1,493 sequences x
300 frames split 1:1:8 like Scoliosis1K_118 (train 744 ids, of which a trial loads train + val; the test
ids are never loaded). Synthesising that takes minutes, so by default 30 sequences of 300 frames are
synthesised (timed; the full synthesis time is extrapolated from it) and the release layout is
built from hard links to them: every file has the real size and is loaded in full, only the content
repeats, so the memory measured is that of the full release, not an extrapolation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runnable from a checkout without `pip install -e .`: put the repository root on the path.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RELEASE_SEQUENCES, RELEASE_FRAMES = 1493, 300
# Scoliosis1K_118: (positive, neutral, negative) counts of TRAIN_SET and TEST_SET.
TRAIN_COUNTS = {"positive": 74, "neutral": 74, "negative": 596}
TEST_COUNTS = {"positive": 419, "neutral": 126, "negative": 204}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(root: str, partition: str, representation: str, steps: int) -> None:
    """The trial-like process: load train + val, a few steps, print one JSON line."""
    import torch

    from scolio_core.batches import load_trainval
    from scolio_core.protocol import resolve_split
    from scolio_core.train import run_training
    from sweeps.profiles import load_profile

    torch.set_num_threads(1)
    config = load_profile("demo").base_config().replace(**{
        "data.root": root, "data.partition": partition, "input.representation": representation,
        "train.iterations": steps, "train.eval_every": steps, "train.device": "cpu"})
    base = _rss_mb()
    start = time.perf_counter()
    data = load_trainval(config, resolve_split(config).trainval())
    load_s = time.perf_counter() - start
    after_load = _rss_mb()
    with tempfile.TemporaryDirectory() as workdir:
        run_training(config, data, workdir, lambda m, c: None)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    frames = len(data.train.frames) + len(data.val.frames)
    print(json.dumps({"base_mb": base, "after_load_mb": after_load, "peak_mb": peak, "load_s": load_s,
                      "frames": frames, "sequences": len(data.train) + len(data.val),
                      "data_mb": (data.train.frames.nbytes + data.val.frames.nbytes) / 2**20}))


def measure(root: Path, partition: Path, representation: str, steps: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(root), str(partition), representation,
                          str(steps)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"trial subprocess failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def release_root(scratch: Path, seeds: int, full: bool) -> tuple[Path, Path, float, float]:
    """A release-sized root; returns (root, partition, seconds synthesised, extrapolated full seconds)."""
    from scolio_core.dataset import index_release
    from scolio_core.synth import synthesize

    counts = {c: TRAIN_COUNTS[c] + TEST_COUNTS[c] for c in TRAIN_COUNTS}
    n_seed = RELEASE_SEQUENCES if full else seeds  # synth's minimum; 1:1:8 still gives each class a few
    seed_dir = scratch / "seed"
    start = time.perf_counter()
    synthesize(seed_dir, num_sequences=n_seed, frames=RELEASE_FRAMES, train_ratio=(1, 1, 8), seed=0,
               progress=False)
    seconds = time.perf_counter() - start
    extrapolated = seconds * RELEASE_SEQUENCES / n_seed
    if full:
        return seed_dir, next(seed_dir.glob("Scoliosis1K_*.json")), seconds, extrapolated
    root = scratch / "release"
    train, test = [], []
    for modality_dir in ("Scoliosis1K-pose-pkl", "Scoliosis1K-sil-pkl"):
        index = index_release(seed_dir / modality_dir)
        by_class: dict[str, list] = {}
        for record in index.values():
            by_class.setdefault(record.path.parts[-3].lower(), []).append(record.path)
        number = 0
        for cls, total in counts.items():
            sources = sorted(by_class[cls])
            for k in range(total):
                seq_id = f"{number:05d}"
                number += 1
                target = root / modality_dir / seq_id / cls / "000_180" / "000_180.pkl"
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(sources[k % len(sources)], target)
                if modality_dir == "Scoliosis1K-pose-pkl":
                    (train if k < TRAIN_COUNTS[cls] else test).append(seq_id)
    partition = root / "Scoliosis1K_118.json"
    partition.write_text(json.dumps({"TRAIN_SET": train, "TEST_SET": test}))
    return root, partition, seconds, extrapolated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps per trial process (%(default)s)")
    parser.add_argument("--full-synth", action="store_true", help="synthesise all 1,493 x 300 frames")
    parser.add_argument("--seeds", type=int, default=30, help="sequences synthesised for the links (%(default)s)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return

    from sweeps.common import synthetic_root
    from sweeps.profiles import load_profile

    demo = load_profile("demo")
    demo_root = synthetic_root(demo, None)
    rows = []
    for representation in ("body-only", "silhouette"):
        r = measure(demo_root, demo_root / demo.fixed["data.partition"], representation, args.steps)
        rows.append(("demo", representation, r))
    with tempfile.TemporaryDirectory(prefix="scolio-mem-") as scratch:
        root, partition, synth_s, full_s = release_root(Path(scratch), args.seeds, args.full_synth)
        how = "synthesised in full" if args.full_synth else "hard-linked from a synthesised subset"
        print(f"release-size stand-in ({RELEASE_SEQUENCES} x {RELEASE_FRAMES} frames, {how}): synthesis took "
              f"{synth_s:.1f} s; full synthesis {'took' if args.full_synth else 'would take ~'}{full_s:.0f} s "
              f"{'' if args.full_synth else '(extrapolated)'}")
        for representation in ("body-only", "silhouette"):
            rows.append(("release", representation, measure(root, partition, representation, args.steps)))
    for size, representation, r in rows:
        print(f"{size:8s} {representation:10s}: {r['sequences']:5d} seqs / {r['frames']:7d} frames loaded "
              f"({r['data_mb']:7.1f} MB arrays) in {r['load_s']:5.1f} s; RSS {r['base_mb']:.0f} MB after imports, "
              f"{r['after_load_mb']:.0f} MB after load, peak {r['peak_mb']:.0f} MB")
    peak = {(s, m): r["peak_mb"] for s, m, r in rows}
    print(f"SUMMARY memory: peak RSS per trial process: demo {peak['demo', 'body-only']:.0f} MB (poses) / "
          f"{peak['demo', 'silhouette']:.0f} MB (silhouettes); release size {peak['release', 'body-only']:.0f} MB / "
          f"{peak['release', 'silhouette']:.0f} MB")


if __name__ == "__main__":
    main()
