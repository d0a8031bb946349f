"""The search space's vocabulary: the distributions a profile's `search` section decodes to, and the Optuna
define-by-run space built from them.

    input.representation: {choice: [full-body, body-only, head-lite, silhouette]}
    input.sigma: {uniform: [2.0, 12.0]}
    train.lr: {loguniform: [0.02, 0.2]}
    model.parts: {int: [8, 16]}

This module is the only place that decodes `{choice|uniform|loguniform|int: [...]}`. The space is
conditional: skeleton-map knobs (`SKELETON_ONLY_FIELDS`) are sampled only when the chosen representation
renders skeleton maps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from scolio_core.config import SKELETON_ONLY_FIELDS, SKELETON_REPRESENTATIONS
from scolio_core.errors import ConfigError
from scolio_core.safe_yaml import brief

# Sane bounds for what a search space may say. No ExperimentConfig field needs a bound beyond 1e9 (iterations
# are ~1e4, rates ~1e-4); beyond it a range is a typo (`int: [1, 1e30]`) that Optuna would sample anyway.
MAX_ABS_BOUND = 1e9
MAX_CHOICES = 256


@dataclass(frozen=True)
class Choice:
    values: tuple

    def suggest(self, trial, key: str) -> Any:
        return trial.suggest_categorical(key, list(self.values))

    def edge_values(self) -> list:
        return list(self.values)

    def enumerate(self, limit: int) -> list | None:
        return list(self.values)

    def to_spec(self) -> dict[str, list]:
        return {"choice": list(self.values)}

    def contains(self, value: Any) -> bool:
        # True == 1 in Python; a point's `true` must not pass for a choice of 1 (or the reverse).
        return any(v == value and isinstance(v, bool) == isinstance(value, bool) for v in self.values)


@dataclass(frozen=True)
class Uniform:
    """A float range; `log=True` samples it log-uniformly (`loguniform` in YAML)."""

    low: float
    high: float
    log: bool = False

    def suggest(self, trial, key: str) -> float:
        return trial.suggest_float(key, float(self.low), float(self.high), log=self.log)

    def edge_values(self) -> list:
        return [self.low, self.high]

    def enumerate(self, limit: int) -> list | None:
        return None  # continuous

    def to_spec(self) -> dict[str, list]:
        # The values as written (1 stays 1): the spec is an MLflow param a resumed sweep must match exactly.
        return {"loguniform" if self.log else "uniform": [self.low, self.high]}

    def contains(self, value: Any) -> bool:
        return is_number(value) and math.isfinite(value) and self.low <= value <= self.high


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int

    def suggest(self, trial, key: str) -> int:
        return trial.suggest_int(key, int(self.low), int(self.high))

    def edge_values(self) -> list:
        return [self.low, self.high]

    def enumerate(self, limit: int) -> list | None:
        count = int(self.high) - int(self.low) + 1
        return list(range(int(self.low), int(self.high) + 1)) if count <= limit else None

    def to_spec(self) -> dict[str, list]:
        return {"int": [self.low, self.high]}

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high


Distribution = Union[Choice, Uniform, IntRange]
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_bounded_scalar(value: Any) -> bool:
    """A choice member: a string, a bool, or a number within MAX_ABS_BOUND (a list of those: e.g. milestones)."""
    if isinstance(value, list):
        return len(value) <= MAX_CHOICES and all(_is_bounded_scalar(v) and not isinstance(v, list) for v in value)
    if is_number(value):
        return math.isfinite(value) and abs(value) <= MAX_ABS_BOUND
    return isinstance(value, (str, bool))


def parse_distribution(spec: Any, where: str) -> Distribution:
    """`{choice: [...]}`, `{uniform: [low, high]}`, `{loguniform: [low, high]}` or `{int: [low, high]}`."""
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise ConfigError(f"{where} must be one of {{{'|'.join(DISTRIBUTIONS)}: [...]}}, got {brief(spec)}")
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(values, list) or not values or len(values) > MAX_CHOICES:
            raise ConfigError(f"{where}.choice needs a list of 1 to {MAX_CHOICES} values, got {brief(values)}")
        for value in values:
            if not _is_bounded_scalar(value):
                raise ConfigError(f"{where}.choice: {brief(value)} is not a string, a boolean or a finite number "
                                  f"within +-{MAX_ABS_BOUND:g}")
        if len({(type(v), v) for v in values}) != len(values):  # a repeat would weight TPE's prior silently
            raise ConfigError(f"{where}.choice lists a value twice: {brief(values)}")
        return Choice(tuple(values))
    if not isinstance(values, list) or len(values) != 2 or not all(is_number(v) for v in values):
        raise ConfigError(f"{where}.{kind} needs a list [low, high] of numbers, got {brief(values)}")
    low, high = values
    if not all(math.isfinite(v) and abs(v) <= MAX_ABS_BOUND for v in values):
        raise ConfigError(f"{where}.{kind}: bounds must be finite numbers within +-{MAX_ABS_BOUND:g}, "
                          f"got {brief(values)}")
    if not low < high:
        raise ConfigError(f"{where}.{kind}: low {low!r} must be below high {high!r}")
    if kind == "int":
        if not all(isinstance(v, int) for v in values):
            raise ConfigError(f"{where}.int needs integer bounds, got {brief(values)}")
        return IntRange(low, high)
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}.loguniform needs low > 0, got {low!r}")
    return Uniform(low, high, log=kind == "loguniform")



def is_skeleton_only(key: str) -> bool:
    section, _, name = key.partition(".")
    return section == "input" and name in SKELETON_ONLY_FIELDS



class ConditionalSpace:
    """An Optuna define-by-run space: skeleton-only knobs are sampled only for skeleton representations.

    A class rather than a closure because Tune pickles the searcher (with this) into its experiment state.
    """

    def __init__(self, search: Mapping[str, Distribution], default_representation: str) -> None:
        self.search = dict(search)
        self.default_representation = default_representation

    def __call__(self, trial) -> None:
        representation = self.default_representation
        if "input.representation" in self.search:
            representation = self.search["input.representation"].suggest(trial, "input.representation")
        for key, dist in self.search.items():
            if key == "input.representation":
                continue
            if is_skeleton_only(key) and representation not in SKELETON_REPRESENTATIONS:
                continue
            dist.suggest(trial, key)
