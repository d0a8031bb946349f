"""Run one training job from a YAML config (no Ray), writing checkpoints.

    scolio train --config configs/train_cpu.yaml --data-root /tmp/synth --workdir runs/cpu

The work directory may be reused, but nothing in it that scoliotune did not write is overwritten or deleted.
`scoliotune-workdir.json` records the sha256 of each file `scolio train` wrote there (config.yaml,
trainval.json, best.json); one that is absent from the record, or was edited since, refuses the run before
any work, in one line. So does a `checkpoints/iter_*` directory that is not a checkpoint scoliotune wrote
(marker file and hashes, `checkpoint.not_ours_reason`): the training loop prunes `iter_*` directories.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import yaml

from scolio_core.config import ExperimentConfig, load_config, parse_assignments
from scolio_core.data.bounded import load_json_bounded, read_bounded
from scolio_core.errors import WorkdirError, one_line

WORKDIR_RECORD = "scoliotune-workdir.json"
OWNED_FILES = ("config.yaml", "trainval.json", "best.json")  # what `scolio train` writes beside checkpoints/
_MAX_OWNED_BYTES = 4 << 20  # each is a few KB; a bigger one is not ours and is not read


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE.yaml",
                        help="YAML file with data/input/model/loss/train sections")
    parser.add_argument("--data-root", metavar="DIR", help="override data.root")
    parser.add_argument("--workdir", default="runs/train", metavar="DIR",
                        help="where checkpoints and the split manifest go (default runs/train)")
    parser.add_argument("--resume", metavar="DIR", help="checkpoint directory of this run to resume from")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set input.sigma=4 (repeatable)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store whose test-set ledger is checked: training or validating on ids that a "
                             "study's look scored is refused (default $MLFLOW_TRACKING_URI, else the default store)")


def apply_overrides(config: ExperimentConfig, data_root: str | None, assignments: list[str]) -> ExperimentConfig:
    overrides = parse_assignments(assignments)
    if data_root:
        overrides["data.root"] = str(Path(data_root).resolve())
    return config.replace(**overrides) if overrides else config


# ---- the work directory: only what scoliotune wrote is overwritten --------------------------------------------


def _record(workdir: Path) -> dict[str, list[str]]:
    """File name -> sha256 digests scolio train wrote under that name (the last two: see `_write_owned`)."""
    path = workdir / WORKDIR_RECORD
    if not os.path.lexists(path):
        return {}
    values = load_json_bounded(path, 1 << 20, max_depth=3, follow_symlinks=False, error=WorkdirError)
    written = values.get("written") if isinstance(values, dict) else None
    if (not isinstance(written, dict) or not all(isinstance(v, list) and all(isinstance(d, str) for d in v)
                                                 for v in written.values())):
        raise WorkdirError(f"{one_line(str(path))}: not a scoliotune work-directory record; refusing to use "
                           "this work directory (nothing was changed)")
    return written


def _check_owned(workdir: Path, name: str, record: dict[str, list[str]]) -> None:
    path = workdir / name
    if not os.path.lexists(path):
        return
    refusal = (f"{one_line(str(path))}: exists and scoliotune did not write it (or it was edited since); refusing "
               "to overwrite it (nothing was changed): choose a new --workdir or move the file")
    try:
        digest = hashlib.sha256(read_bounded(path, _MAX_OWNED_BYTES, follow_symlinks=False,
                                             error=WorkdirError)).hexdigest()
    except WorkdirError as exc:
        raise WorkdirError(f"{refusal} [{exc}]") from None
    if digest not in record.get(name, ()):
        raise WorkdirError(refusal)


def check_workdir(workdir: str | Path) -> None:
    """WorkdirError (one line, nothing changed) unless every file `scolio train` would overwrite or delete in
    `workdir` is one scoliotune wrote."""
    from scolio_core.training.checkpoint import not_ours_reason

    workdir = Path(workdir)
    if not workdir.is_dir():
        return
    record = _record(workdir)
    for name in OWNED_FILES:
        _check_owned(workdir, name, record)
    checkpoints = workdir / "checkpoints"
    if checkpoints.is_symlink() or (os.path.lexists(checkpoints) and not checkpoints.is_dir()):
        # a link would put checkpoints (and their pruning) in someone else's folder
        raise WorkdirError(f"{one_line(str(checkpoints))}: a link or a file, not a folder scoliotune made; nothing "
                           "was changed: choose a new --workdir")
    if checkpoints.is_dir():
        for entry in sorted(checkpoints.glob("iter_*")):
            reason = not_ours_reason(entry) if entry.is_dir() and not entry.is_symlink() else "not a directory"
            if reason:
                raise WorkdirError(f"{one_line(str(entry))}: not a checkpoint scoliotune wrote ({reason}); training "
                                   "here would replace or prune it, so nothing was changed: choose a new --workdir")


def _replace(path: Path, data: bytes) -> None:
    # A temporary sibling renamed over the target: a crash leaves the old file or the new one, never half.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _write_owned(workdir: Path, name: str, text: str) -> None:
    """Write `workdir/name` after checking that whatever it replaces is ours, recording the new digest first.

    The record keeps the previous digest beside the new one, so a crash between the two writes leaves a file
    (old or new) that the next run still recognises.
    """
    record = _record(workdir)
    _check_owned(workdir, name, record)
    data = text.encode("utf-8")
    record[name] = (record.get(name, []) + [hashlib.sha256(data).hexdigest()])[-2:]
    _replace(workdir / WORKDIR_RECORD, json.dumps({"written": record}, indent=1).encode("utf-8"))
    _replace(workdir / name, data)


def run(args: argparse.Namespace) -> int:
    config = apply_overrides(load_config(args.config), args.data_root, args.set)
    workdir = Path(args.workdir)
    check_workdir(workdir)  # before any data is read or a model built

    from scolio_core.data.resolve import resolve_split, validate_trainval
    from scolio_core.training.batches import load_trainval
    from scolio_core.training.loop import run_training

    split = resolve_split(config)
    validate_trainval(config, split)
    from scolio_core.tracking.guard import check_training_split

    check_training_split(args.tracking_uri, split, config.data.root)  # ids a study's look scored: refused
    workdir.mkdir(parents=True, exist_ok=True)
    _write_owned(workdir, "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    _write_owned(workdir, "trainval.json", split.trainval().to_json())
    data = load_trainval(config, split.trainval())
    print(f"train {len(data.train)} / val {len(data.val)} sequences ({split.partition}, "
          f"split {split.fingerprint[:12]}); {config.train.iterations} iterations")

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        print(f"iter {metrics['iteration']:>6}  loss {metrics['train/loss']:.4f}  "
              f"val acc {metrics['val/accuracy']:.4f}  val macro-F1 {metrics['val/macro_f1']:.4f}  "
              f"({metrics['train/step_seconds']:.2f} s/step)", flush=True)

    result = run_training(config, data, workdir, report, resume_from=args.resume)
    best = {k: v for k, v in result.best_metrics.items() if k.startswith("val/") and "ci" not in k}
    _write_owned(workdir, "best.json", json.dumps({"checkpoint": str(result.best_checkpoint), "metrics": best},
                                                  indent=2))
    print(f"best checkpoint (by val macro-F1): {result.best_checkpoint}")
    print(f"  val accuracy {best.get('val/accuracy', float('nan')):.4f}  "
          f"val macro-F1 {best.get('val/macro_f1', float('nan')):.4f}")
    return 0
