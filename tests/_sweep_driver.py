"""Runs a real sweep script as a test subprocess, on a private local Ray that the test can find and end.

    python tests/_sweep_driver.py --ray-temp-dir /tmp/srlX [--script finetune] -- <sweep script arguments>

Everything after `--` goes to `sweeps/<script>.py`'s `main()` unchanged. The only difference from running
the script directly: the local Ray it starts uses `--ray-temp-dir` (short, private: Ray's socket paths are
length-limited and /tmp/ray is shared with other users), `--num-cpus` and no dashboard. The sweep still
connects to Ray at the point it normally does (after validating data and tracking), so it runs
exactly the code path a user runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-temp-dir", required=True)
    parser.add_argument("--script", choices=("representation", "finetune", "table"), default="representation")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args(argv[:split])

    sys.path.insert(0, str(ROOT))
    from scolio_sweep.engine import tuner as engine

    connect = engine.connect_ray

    def private_ray(address=None, num_cpus=None, **kwargs):
        # prepare_sweep imports connect_ray from scolio_sweep.engine.tuner when it runs: it calls this wrapper.
        return connect(address, num_cpus if num_cpus is not None else args.num_cpus,
                       temp_dir=kwargs.get("temp_dir") or args.ray_temp_dir, include_dashboard=False)

    engine.connect_ray = private_ray
    sys.path.insert(0, str(ROOT / "sweeps"))  # the entry scripts are scripts, not a package
    script = importlib.import_module(args.script)
    return script.main(argv[split + 1:])


if __name__ == "__main__":
    sys.exit(main())
