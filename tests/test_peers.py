"""benchmarks/peers.py: SMAC3's racing Intensifier replayed on a synthetic table of recorded trainings."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("smac", reason="smac (SMAC3) is an optional benchmark dependency")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.peers import CS_NAMES, PeerRun, config_key, configspace, smac_intensifier
from benchmarks.search import SPACE, grid_points, point_key

SEEDS = 3
BEST = "full-body sigma 4 weighted lr 0.1"


def _table() -> dict[tuple[str, int], float]:
    """BEST scores 0.8 at every seed; every other point is noisy and at most ~0.6. The others follow an additive
    effect of each knob (BEST's levels are the good ones), as real knobs roughly do, so the surrogate has signal."""
    rng = random.Random(1)
    table = {}
    for point in grid_points(SPACE):
        key = point_key(point)
        base = (0.2 + 0.12 * (point["input.representation"] == "full-body") + 0.06 * (point.get("input.sigma") == 4.0)
                + 0.06 * (point["loss.class_weighting"] == "weighted") + 0.12 * (point["train.lr"] == 0.1))
        for k in range(SEEDS):
            table[key, k] = 0.8 if key == BEST else base + rng.gauss(0, 0.03)
    return table


class Recorded:
    """val() over the table, counting calls: each call is a training the replay paid for."""

    def __init__(self) -> None:
        self.table = _table()
        self.calls: list[tuple[str, int]] = []

    def __call__(self, key: str, k: int) -> float:
        self.calls.append((key, k))
        return self.table[key, k]


@pytest.fixture(scope="module")
def run20(tmp_path_factory) -> tuple[PeerRun, Recorded]:
    val = Recorded()
    return smac_intensifier(val, max_seeds=SEEDS, n_trainings=20, seed=0,
                            output_dir=tmp_path_factory.mktemp("smac")), val


def test_config_space_is_the_grid() -> None:
    from ConfigSpace import Configuration

    cs = configspace()
    keys = {point_key(p) for p in grid_points(SPACE)}
    assert len(keys) == 30
    for point in grid_points(SPACE):
        values: dict[str, Any] = {CS_NAMES[k]: v for k, v in point.items()}
        assert config_key(Configuration(cs, values=values)) == point_key(point)
    assert {config_key(c) for c in cs.sample_configuration(400)} == keys


def test_chooses_the_clear_best(run20) -> None:
    # SMAC proposes only ~13 of the 30 points in 20 trainings, so whether BEST is proposed at all depends on the
    # seed (about half of seeds 0..7 did); seed 0 proposes it, and the race must then keep it.
    run, _ = run20
    assert BEST in {key for key, _ in run.trainings}
    assert run.chosen == BEST


def test_compute_accounting(run20) -> None:
    run, val = run20
    keys = {point_key(p) for p in grid_points(SPACE)}
    assert 0 < len(run.trainings) <= 20
    assert len(set(run.trainings)) == len(run.trainings)  # no training is run twice
    assert val.calls == run.trainings  # every recorded value read is one charged training, in order
    assert all(key in keys and 0 <= k < SEEDS for key, k in run.trainings)
    assert run.chosen in keys


def test_same_seed_same_run(tmp_path) -> None:
    # The same output_dir both times: overwrite=True must keep the first run's files from seeding the second.
    first = smac_intensifier(Recorded(), max_seeds=2, n_trainings=12, seed=3, output_dir=tmp_path)
    second = smac_intensifier(Recorded(), max_seeds=2, n_trainings=12, seed=3, output_dir=tmp_path)
    assert first == second
    assert all(k < 2 for _, k in first.trainings)
