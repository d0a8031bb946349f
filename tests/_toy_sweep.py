"""A toy Tune sweep through scolio_sweep.engine.tuner + scolio_sweep.engine.callbacks, for the tracking and kill-and-resume tests.

The toy trainable reports a falling `loss` and a rising `val/macro_f1` once per step, checkpoints every
step and resumes from `tune.get_checkpoint()`. Run as a script it is a whole sweep driver (its own local Ray
in --ray-temp-dir); running the same command again resumes the sweep:

    python tests/_toy_sweep.py --storage /tmp/x/ray --tracking-uri sqlite:////tmp/x/mlflow.db \
        --ray-temp-dir /tmp/x/r --trials 4 --steps 6 --sleep 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from ray import tune

ROOT = Path(__file__).resolve().parents[1]


def toy_trainable(config: dict) -> None:
    """`steps` reports; `scale` sets how fast the loss falls; `fail_at` raises at that step (0: never);
    past step `peak` (when given) `val/macro_f1` falls, so the best checkpoint is not the last one."""
    step = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            step = json.loads((Path(directory) / "state.json").read_text())["step"]
    while step < config["steps"]:
        step += 1
        time.sleep(config.get("sleep", 0.0))
        if step == config.get("fail_at", 0):
            raise RuntimeError(f"toy failure at step {step}")
        loss = config["scale"] / step
        f1 = 1.0 - loss / (1.0 + loss) - 0.2 * max(0, step - config.get("peak", step))
        metrics = {"loss": loss, "val/macro_f1": f1, "step": step}
        if not config.get("checkpoint", True):
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as directory:
            (Path(directory) / "state.json").write_text(json.dumps({"step": step}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--ray-temp-dir", required=True)
    parser.add_argument("--name", default="toy")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--sleep", type=float, default=0.5)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from scolio_sweep.engine.callbacks import MLflowLifecycle
    from scolio_sweep.engine.tuner import connect_ray, run_or_restore

    connect_ray(num_cpus=2, temp_dir=args.ray_temp_dir, include_dashboard=False)
    space = {"scale": tune.grid_search([1.0 + i for i in range(args.trials)]), "steps": args.steps,
             "sleep": args.sleep}
    lifecycle = MLflowLifecycle(args.tracking_uri, "toy", args.name, metric="val/macro_f1", mode="max",
                                params={"space": space}, budget="steps")
    grid = run_or_restore(toy_trainable, name=args.name, storage_path=args.storage, param_space=space,
                          tune_config=tune.TuneConfig(metric="val/macro_f1", mode="max", reuse_actors=True),
                          run_config_kwargs={"verbose": 0}, callbacks=[lifecycle],
                          resources={"cpu": 1})
    print(f"finished {len(grid)} trials, errors: {len(grid.errors)}", flush=True)
    return 0 if not grid.errors else 1


if __name__ == "__main__":
    sys.exit(main())
