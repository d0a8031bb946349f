"""Peers for `benchmarks/search.py`'s record-then-replay comparison: methods a user could pick instead of our
pipeline, replayed on the same recorded table of full trainings.

`smac_intensifier`: SMAC3's (smac 2.4) racing Intensifier with deterministic=False, which spreads trainings over
configurations *and* training seeds: a challenger is run on 1, 2, 4, ... of the incumbent's seeds and dropped as
soon as it is worse on the seeds they share, while the incumbent gains one seed at a time up to max_config_calls.
That is the variance-aware allocation our pipeline's confirmation step is compared against.
"""

from __future__ import annotations

import logging
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.search import SPACE, point_key
from scolio_core.config import SKELETON_REPRESENTATIONS

# ConfigSpace names <-> the sweep's dotted keys; plain names keep ConfigSpace and SMAC's JSON output unambiguous.
CS_NAMES: dict[str, str] = {
    "input.representation": "representation",
    "input.sigma": "sigma",
    "loss.class_weighting": "class_weighting",
    "train.lr": "lr",
}
FLOAT_KNOBS = ("input.sigma", "train.lr")


@dataclass(frozen=True)
class PeerRun:
    chosen: str                       # point_key of the configuration the method would test
    trainings: list[tuple[str, int]]  # (point_key, seed index k) in the order they were run; k = 0..max_seeds-1


def configspace(space: dict[str, dict[str, list]] = SPACE, seed: int = 0) -> Any:
    """SPACE as a ConfigSpace: four categoricals, sigma active only for skeleton maps, so SMAC sees the same points
    as `grid_points(space)` (30 for SPACE)."""
    from ConfigSpace import Categorical, ConfigurationSpace, InCondition

    cs = ConfigurationSpace(seed=seed)
    knobs = {key: Categorical(CS_NAMES[key], list(spec["choice"])) for key, spec in space.items()}
    cs.add(list(knobs.values()))
    skeletons = [r for r in space["input.representation"]["choice"] if r in SKELETON_REPRESENTATIONS]
    cs.add(InCondition(knobs["input.sigma"], knobs["input.representation"], skeletons))
    return cs


def config_key(config: Any) -> str:
    """A ConfigSpace Configuration (inactive sigma absent) -> the benchmark's point_key."""
    values = dict(config)
    point: dict[str, Any] = {}
    for key, name in CS_NAMES.items():
        if name in values:
            # ConfigSpace may hand categorical floats back as numpy scalars: point_key wants plain floats.
            point[key] = float(values[name]) if key in FLOAT_KNOBS else str(values[name])
    return point_key(point)


def _never_called(config: Any, seed: int = 0) -> float:
    raise AssertionError("the replay drives SMAC by ask/tell only; SMAC must not run the target function")


def smac_intensifier(val: Callable[[str, int], float], *, max_seeds: int, n_trainings: int, seed: int,
                     output_dir: Path) -> PeerRun:
    """Replay SMAC3 (HPO facade, racing Intensifier, max_config_calls=max_seeds) on a recorded table.

    `val(key, k)` is the recorded best val macro-F1 of point `key` at the k-th training seed of the draw. Every new
    (point, k) training costs one unit; SMAC is told cost 1 - val and stops after `n_trainings` units.
    """
    from smac import HyperparameterOptimizationFacade, Scenario
    from smac.runhistory.dataclasses import TrialValue

    if max_seeds < 1 or n_trainings < 1:
        raise ValueError(f"need max_seeds >= 1 and n_trainings >= 1, got {max_seeds}, {n_trainings}")
    # SMAC logs to its own loggers; logging_level=False below stops it from re-configuring the root logger
    # (its default dictConfig would), and this silences its INFO/WARNING chatter for the call only.
    smac_logger = logging.getLogger("smac")
    previous_level = smac_logger.level
    smac_logger.setLevel(logging.ERROR)
    try:
        scenario = Scenario(configspace(SPACE, seed), name=f"smac-intensifier-seed{seed}",
                            output_directory=Path(output_dir), deterministic=False, n_trials=n_trainings, seed=seed)
        # The HPO facade rather than the AC facade, though both default to the racing `Intensifier`: the HPO facade
        # is SMAC's documented choice for hyperparameter optimisation (random-forest surrogate that handles the
        # categorical/conditional space, a Sobol initial design of max(1, n_trials/4) configs, 20% random configs),
        # while the AC facade targets many-instance algorithm configuration (starts from the default config only,
        # 50% random configs, max_config_calls 2000). max_config_calls=max_seeds: SMAC then draws exactly max_seeds
        # training seeds (no instances), the record's seeds.
        intensifier = HyperparameterOptimizationFacade.get_intensifier(scenario, max_config_calls=max_seeds)
        smac = HyperparameterOptimizationFacade(scenario, _never_called, intensifier=intensifier,
                                                logging_level=False, overwrite=True)

        seed_index: dict[int, int] = {}  # SMAC's drawn seed -> record seed k, in order of first appearance
        recorded: dict[tuple[str, int], float] = {}
        trainings: list[tuple[str, int]] = []
        # Re-asked pairs cost nothing (below), so bound the asks as well, in case SMAC kept re-asking.
        for _ in range(20 * n_trainings):
            if len(trainings) >= n_trainings:
                break
            try:
                info = smac.ask()
            except StopIteration:  # the intensifier found no new trial (space or seeds exhausted)
                break
            k = seed_index.setdefault(info.seed, len(seed_index))
            if k >= max_seeds:
                # Unreachable with max_config_calls=max_seeds (SMAC draws that many seeds and reuses them); a seed
                # beyond the record has no honest value, so fail loudly rather than reuse another seed's training.
                raise RuntimeError(f"SMAC asked for seed #{k + 1} but the record holds {max_seeds} seeds")
            pair = (config_key(info.config), k)
            if pair not in recorded:
                recorded[pair] = float(val(*pair))
                trainings.append(pair)
            # A pair already run (which SMAC's runhistory normally prevents) is told the same recorded value again,
            # free: the training exists, so charging it twice would misstate the compute.
            smac.tell(info, TrialValue(cost=1.0 - recorded[pair]), save=False)

        incumbent = smac.intensifier.get_incumbent()
    finally:
        smac_logger.setLevel(previous_level)

    if incumbent is not None:
        chosen = config_key(incumbent)
    else:  # no comparable incumbent: the best mean val over what was run
        by_key: dict[str, list[float]] = {}
        for (key, _), value in recorded.items():
            by_key.setdefault(key, []).append(value)
        if not by_key:
            raise RuntimeError("SMAC proposed no trial")
        chosen = max(by_key, key=lambda key: (statistics.fmean(by_key[key]), key))
    return PeerRun(chosen=chosen, trainings=trainings)
