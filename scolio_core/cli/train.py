"""Run one training job from a YAML config (no Ray), writing checkpoints.

    scolio train --config configs/train_cpu.yaml --data-root /tmp/synth --workdir runs/cpu
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from scolio_core.config import ExperimentConfig, load_config, parse_assignments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE.yaml",
                        help="YAML file with data/input/model/loss/train sections")
    parser.add_argument("--data-root", metavar="DIR", help="override data.root")
    parser.add_argument("--workdir", default="runs/train", metavar="DIR",
                        help="where checkpoints and the split manifest go (default runs/train)")
    parser.add_argument("--resume", metavar="DIR", help="checkpoint directory of this run to resume from")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set input.sigma=4 (repeatable)")


def apply_overrides(config: ExperimentConfig, data_root: str | None, assignments: list[str]) -> ExperimentConfig:
    overrides = parse_assignments(assignments)
    if data_root:
        overrides["data.root"] = str(Path(data_root).resolve())
    return config.replace(**overrides) if overrides else config


def run(args: argparse.Namespace) -> int:
    from scolio_core.data.resolve import resolve_split, validate_trainval
    from scolio_core.training.batches import load_trainval
    from scolio_core.training.loop import run_training

    config = apply_overrides(load_config(args.config), args.data_root, args.set)
    split = resolve_split(config)
    validate_trainval(config, split)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    split.trainval().save(workdir / "trainval.json")
    data = load_trainval(config, split.trainval())
    print(f"train {len(data.train)} / val {len(data.val)} sequences ({split.partition}, "
          f"split {split.fingerprint[:12]}); {config.train.iterations} iterations")

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        print(f"iter {metrics['iteration']:>6}  loss {metrics['train/loss']:.4f}  "
              f"val acc {metrics['val/accuracy']:.4f}  val macro-F1 {metrics['val/macro_f1']:.4f}  "
              f"({metrics['train/step_seconds']:.2f} s/step)", flush=True)

    result = run_training(config, data, workdir, report, resume_from=args.resume)
    best = {k: v for k, v in result.best_metrics.items() if k.startswith("val/") and "ci" not in k}
    (workdir / "best.json").write_text(json.dumps({"checkpoint": str(result.best_checkpoint), "metrics": best},
                                                  indent=2))
    print(f"best checkpoint (by val macro-F1): {result.best_checkpoint}")
    print(f"  val accuracy {best.get('val/accuracy', float('nan')):.4f}  "
          f"val macro-F1 {best.get('val/macro_f1', float('nan')):.4f}")
    return 0
