"""Memory of N trials on one node, each loading its own train/val copy vs sharing the driver's copy.

Run: python benchmarks/memory.py                   # ~5 min: demo and release size, poses and silhouettes, 4 trials
     python benchmarks/memory.py --sizes demo      # demo size only (~1 min)
     python benchmarks/memory.py --full-synth      # synthesise all 1,493 x 300 frames instead of hard links

One local Ray runs N trial-like actors at once (the first wave of a sweep on one node). Each does what a trial
does: gets its data through `scolio_sweep.trainables.shared_data.trial_data` (mode `own`: `load_trainval` from disk,
poses imputed; mode `shared`: the driver loaded it once and `ray.put` it, the actor maps it from the object
store), touches every byte of it (a long run samples every frame), runs a few optimiser steps of the demo
profile's model plus the final val evaluation, and keeps the data, as a trial does for its whole life. Then,
while all N are alive, it reads `/proc/<pid>/smaps_rollup` of each: RSS, PSS (shared pages divided among the
processes that map them) and USS (Private_Clean + Private_Dirty: what the process alone holds). The node
total is the sum of PSS over the driver's whole process tree (driver, Ray's own processes, the actors), so
shared pages count once.

Demo size is the demo profile's synthetic stand-in (240 x 32 frames). Release size is 1,493 sequences x 300
frames split 1:1:8 like Scoliosis1K_118 (744 train ids; a trial loads train + val, never test ids). Instead
of minutes of synthesis, 30 sequences of 300 frames are synthesised and the release layout is built from
hard links to them: every file has the real size and is loaded in full, only the content repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Runnable from a checkout without `pip install -e .`: put the repository root on the path.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ray  # noqa: E402

RELEASE_SEQUENCES, RELEASE_FRAMES = 1493, 300
# Scoliosis1K_118: (positive, neutral, negative) counts of TRAIN_SET and TEST_SET.
TRAIN_COUNTS = {"positive": 74, "neutral": 74, "negative": 596}
TEST_COUNTS = {"positive": 419, "neutral": 126, "negative": 204}


def smaps(pid: int) -> dict[str, float]:
    """RSS, PSS and USS of a process in MB, from /proc/<pid>/smaps_rollup."""
    values: dict[str, int] = {}
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:  # the process ended meanwhile
        return {"rss": 0.0, "pss": 0.0, "uss": 0.0}
    for line in lines[1:]:
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0])  # kB
    return {"rss": values["Rss"] / 1024, "pss": values["Pss"] / 1024,
            "uss": (values["Private_Clean"] + values["Private_Dirty"]) / 1024}


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (Ray's local processes are children of the driver that started it)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2:].split()[1])  # after "pid (comm) state"
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


@ray.remote(num_cpus=1)
class TrialProcess:
    """A trial-like process: get the data, touch it all, train a few steps, keep the data."""

    def __init__(self) -> None:
        self.data = None

    def run(self, config_flat: dict, split, shared, steps: int) -> dict:
        import numpy as np
        import torch

        from scolio_core.config import ExperimentConfig
        from scolio_core.training.loop import run_training
        from scolio_sweep.trainables.shared_data import trial_data

        torch.set_num_threads(1)
        config = ExperimentConfig.from_dict(config_flat).replace(**{
            "train.iterations": steps, "train.eval_every": steps, "train.device": "cpu"})
        start = time.perf_counter()
        data = trial_data(config, split, shared)
        load_s = time.perf_counter() - start
        frames = (data.train.frames, data.val.frames)
        checksum = float(sum(a.sum(dtype=np.float64) for a in frames))  # every page touched
        with tempfile.TemporaryDirectory() as workdir:
            run_training(config, data, workdir, lambda m, c: None)
        self.data = data
        return {"pid": os.getpid(), "load_s": load_s, "checksum": checksum,
                "writeable": any(a.flags.writeable for a in frames),
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "data_mb": sum(a.nbytes for a in frames) / 2**20, "frames": sum(len(a) for a in frames)}


def measure(config, trials: int, mode: str, steps: int) -> dict:
    """N trial processes at once in `mode` (own | shared); memory read while all hold their data."""
    from scolio_core.data.resolve import resolve_split
    from scolio_sweep.trainables.shared_data import share_trainval

    split = resolve_split(config).trainval()
    trial_config = config.for_trial()
    shared, driver_load_s = None, 0.0
    if mode == "shared":
        start = time.perf_counter()
        shared = share_trainval([trial_config], split)
        driver_load_s = time.perf_counter() - start
    actors = [TrialProcess.remote() for _ in range(trials)]
    runs = ray.get([a.run.remote(trial_config.to_flat(), split, shared, steps) for a in actors])
    per_trial = [smaps(r["pid"]) for r in runs]
    driver = smaps(os.getpid())
    node_pss = sum(smaps(pid)["pss"] for pid in process_tree(os.getpid()))
    for actor in actors:
        ray.kill(actor)
    del shared
    time.sleep(2)  # let Ray free the objects and reap the actors before the next measurement
    if len({r["checksum"] for r in runs}) != 1:
        raise RuntimeError(f"trials saw different data: {[r['checksum'] for r in runs]}")
    mean = {k: sum(p[k] for p in per_trial) / trials for k in ("rss", "pss", "uss")}
    return {"mode": mode, **{f"{k}_mb": v for k, v in mean.items()},
            "trials_pss_mb": sum(p["pss"] for p in per_trial), "driver_pss_mb": driver["pss"],
            "node_pss_mb": node_pss, "peak_mb": max(r["peak_mb"] for r in runs),
            "load_s": sum(r["load_s"] for r in runs) / trials, "driver_load_s": driver_load_s,
            "writeable": any(r["writeable"] for r in runs), "checksum": runs[0]["checksum"],
            "data_mb": runs[0]["data_mb"], "frames": runs[0]["frames"]}


def release_root(scratch: Path, seeds: int, full: bool) -> tuple[Path, Path]:
    """A release-sized root and its partition (hard links to `seeds` synthesised sequences unless `full`)."""
    from scolio_core.data.release import index_release
    from scolio_core.data.synth import synthesize

    counts = {c: TRAIN_COUNTS[c] + TEST_COUNTS[c] for c in TRAIN_COUNTS}
    seed_dir = scratch / "seed"
    synthesize(seed_dir, num_sequences=RELEASE_SEQUENCES if full else seeds, frames=RELEASE_FRAMES,
               train_ratio=(1, 1, 8), seed=0, progress=False)
    if full:
        return seed_dir, next(seed_dir.glob("Scoliosis1K_*.json"))
    root = scratch / "release"
    train, test = [], []
    for modality_dir in ("Scoliosis1K-pose-pkl", "Scoliosis1K-sil-pkl"):
        by_class: dict[str, list] = {}
        for record in index_release(seed_dir / modality_dir).values():
            by_class.setdefault(record.class_name, []).append(record.path)
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
    return root, partition


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="trial processes on the node at once (%(default)s)")
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps per trial (%(default)s)")
    parser.add_argument("--sizes", default="demo,release", help="comma list of demo, release (%(default)s)")
    parser.add_argument("--full-synth", action="store_true", help="synthesise all 1,493 x 300 frames")
    parser.add_argument("--seeds", type=int, default=30, help="sequences synthesised for the links (%(default)s)")
    args = parser.parse_args()

    from scolio_core.data.stand_in import synthetic_root
    from scolio_sweep.engine.ray_private import local_temp_dir_kwargs
    from scolio_sweep.settings.profile import load_profile

    demo = load_profile("demo")
    base = demo.base_config()
    scratch = Path(tempfile.mkdtemp(prefix="scolio-mem-"))
    # Actors inherit the driver's environment: make this checkout importable for them.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    ray.init(address="local", num_cpus=args.trials, include_dashboard=False, log_to_driver=False,
             **local_temp_dir_kwargs(tempfile.mkdtemp(prefix="srm")))  # short private path: Ray's socket paths are limited
    rows = []
    try:
        sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
        for size in sizes:
            if size == "demo":
                root = synthetic_root(demo.synth, None)
                partition = root / demo.fixed["data.partition"]
            else:
                root, partition = release_root(scratch, args.seeds, args.full_synth)
            for representation in ("body-only", "silhouette"):
                config = base.replace(**{"data.root": str(root), "data.partition": str(partition),
                                         "input.representation": representation})
                pair = [measure(config, args.trials, mode, args.steps) for mode in ("own", "shared")]
                if pair[0]["checksum"] != pair[1]["checksum"]:
                    raise RuntimeError(f"{size} {representation}: shared data differs from a trial's own load")
                rows.extend((size, representation, r) for r in pair)
                for r in pair:
                    print(f"{size:8s} {representation:10s} {r['mode']:6s}: {r['frames']:7d} frames "
                          f"({r['data_mb']:6.1f} MB arrays, writeable={r['writeable']}); per trial RSS "
                          f"{r['rss_mb']:5.0f} / PSS {r['pss_mb']:5.0f} / USS {r['uss_mb']:5.0f} MB, peak RSS "
                          f"{r['peak_mb']:5.0f} MB; {args.trials} trials' PSS {r['trials_pss_mb']:6.0f} MB, "
                          f"driver {r['driver_pss_mb']:5.0f} MB, node total {r['node_pss_mb']:6.0f} MB; "
                          f"trial load {r['load_s']:5.1f} s (driver's one load {r['driver_load_s']:.1f} s)",
                          flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
    by = {(s, m, r["mode"]): r for s, m, r in rows}
    parts = []
    for size in sizes:
        for representation, short in (("body-only", "poses"), ("silhouette", "silhouettes")):
            own, shared = by[size, representation, "own"], by[size, representation, "shared"]
            parts.append(f"{size} {short} node {own['node_pss_mb']:.0f} -> {shared['node_pss_mb']:.0f} MB, "
                         f"trial USS {own['uss_mb']:.0f} -> {shared['uss_mb']:.0f} MB, "
                         f"trial load {own['load_s']:.1f} -> {shared['load_s']:.2f} s")
    print(f"SUMMARY memory ({args.trials} trials/node, own -> shared): " + "; ".join(parts))


if __name__ == "__main__":
    main()
