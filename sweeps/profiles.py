"""Sweep profiles: YAML data holding constants, a search space, budgets and resources — no code.

    name: demo
    metric: val/macro_f1          # declared once; ASHA, Optuna and selection all use it
    mode: max
    synth: {num_sequences: 240, frames: 32, seed: 0}   # used when no --data-root is given
    fixed: {model.width: 16, train.iterations: 120, ...}   # ExperimentConfig dotted keys
    search:                       # dotted key -> one distribution
      input.representation: {choice: [full-body, body-only, head-lite, silhouette]}
      input.sigma: {uniform: [2.0, 12.0]}
      train.lr: {loguniform: [0.02, 0.2]}
    points_to_evaluate: [{...}]   # e.g. the published defaults, tried first
    budget: {num_samples: 8, max_concurrent_trials: 2}
    asha: {grace_period: 1, reduction_factor: 2}   # in evaluations (Tune's training_iteration)
    resources: {cpus_per_trial: 1, gpus_per_trial: 0, workers_per_trial: 1}

The search space is conditional: skeleton-map knobs (`SKELETON_ONLY_FIELDS`) are sampled only when the
chosen representation renders skeleton maps (Optuna define-by-run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scolio_core.config import (
    SKELETON_ONLY_FIELDS,
    SKELETON_REPRESENTATIONS,
    ExperimentConfig,
)
from scolio_core.errors import ConfigError

PROFILE_DIR = Path(__file__).resolve().parent
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")


@dataclass(frozen=True)
class SweepProfile:
    name: str
    metric: str
    mode: str
    fixed: dict[str, Any]
    search: dict[str, dict[str, list]]
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)
    synth: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, int] = field(default_factory=dict)
    asha: dict[str, int] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    description: str = ""

    @property
    def num_samples(self) -> int:
        return int(self.budget.get("num_samples", 8))

    @property
    def max_concurrent_trials(self) -> int:
        return int(self.budget.get("max_concurrent_trials", 2))

    @property
    def evaluations_per_trial(self) -> int:
        """Tune's training_iteration budget: one report per evaluation."""
        train = self.base_config().train
        iterations = train.iterations
        if "train.iterations" in self.search:  # the budget is the largest searched length
            iterations = max(int(v) for v in next(iter(self.search["train.iterations"].values())))
        return -(-iterations // train.eval_every)

    def base_config(self) -> ExperimentConfig:
        return ExperimentConfig.from_dict(self.fixed)


def _is_skeleton_only(key: str) -> bool:
    section, _, name = key.partition(".")
    return section == "input" and name in SKELETON_ONLY_FIELDS


def check_search_space(search: dict, source: str) -> None:
    probe = ExperimentConfig().to_flat()
    for key, spec in search.items():
        if key not in probe:
            raise ConfigError(f"{source}: search key {key!r} is not an ExperimentConfig field")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise ConfigError(f"{source}: search.{key} must be one of {{{'|'.join(DISTRIBUTIONS)}: [...]}}, got {spec!r}")
        kind, values = next(iter(spec.items()))
        if not isinstance(values, list) or (kind != "choice" and len(values) != 2):
            raise ConfigError(f"{source}: search.{key}.{kind} needs a list{'' if kind == 'choice' else ' [low, high]'}")
        # Every value the space can produce must build a valid config (e.g. sigma > 0).
        for value in values:
            try:
                ExperimentConfig().replace(**{key: value})
            except ConfigError as exc:
                raise ConfigError(f"{source}: search.{key}: {exc}") from None


def load_profile(name_or_path: str) -> SweepProfile:
    """A profile by name (`smoke`, `demo`, `paper` under sweeps/) or by path; strict about keys."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise ConfigError(f"sweep profile {name_or_path!r} not found (known: {', '.join(known)})")
    raw = yaml.safe_load(path.read_text()) or {}
    allowed = set(SweepProfile.__dataclass_fields__)
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{path}: unknown profile key(s) {unknown}; known: {sorted(allowed)}")
    for required in ("name", "metric", "mode", "fixed", "search"):
        if required not in raw:
            raise ConfigError(f"{path}: profile needs {required!r}")
    if raw["mode"] not in ("min", "max"):
        raise ConfigError(f"{path}: mode must be min or max, got {raw['mode']!r}")
    try:
        profile = SweepProfile(**raw)
        profile.base_config()
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    check_search_space(profile.search, str(path))
    for point in profile.points_to_evaluate:
        extra = sorted(set(point) - set(profile.search))
        if extra:
            raise ConfigError(f"{path}: points_to_evaluate names keys outside the search space: {extra}")
    return profile


class ConditionalSpace:
    """An Optuna define-by-run space: skeleton-only knobs are sampled only for skeleton representations.

    A class rather than a closure because Tune pickles the searcher (with this) into its experiment state.
    """

    def __init__(self, search: dict[str, dict[str, list]], default_representation: str) -> None:
        self.search = search
        self.default_representation = default_representation

    def __call__(self, trial) -> None:
        representation = self.default_representation
        if "input.representation" in self.search:
            representation = trial.suggest_categorical(
                "input.representation", self.search["input.representation"]["choice"])
        for key, spec in self.search.items():
            if key == "input.representation":
                continue
            if _is_skeleton_only(key) and representation not in SKELETON_REPRESENTATIONS:
                continue
            kind, values = next(iter(spec.items()))
            if kind == "choice":
                trial.suggest_categorical(key, values)
            elif kind == "uniform":
                trial.suggest_float(key, float(values[0]), float(values[1]))
            elif kind == "loguniform":
                trial.suggest_float(key, float(values[0]), float(values[1]), log=True)
            else:
                trial.suggest_int(key, int(values[0]), int(values[1]))


def define_search_space(profile: SweepProfile) -> ConditionalSpace:
    return ConditionalSpace(profile.search, profile.base_config().input.representation)


def apply_overrides(profile: SweepProfile, **overrides: Any) -> SweepProfile:
    """CLI flags override profile fields (num_samples, gpus_per_trial, ...)."""
    budget, resources = dict(profile.budget), dict(profile.resources)
    if overrides.get("num_samples") is not None:
        budget["num_samples"] = int(overrides["num_samples"])
    if overrides.get("max_concurrent_trials") is not None:
        budget["max_concurrent_trials"] = int(overrides["max_concurrent_trials"])
    for key in ("gpus_per_trial", "cpus_per_trial", "workers_per_trial"):
        if overrides.get(key) is not None:
            resources[key] = overrides[key]
    fixed = dict(profile.fixed)
    fixed.update(overrides.get("fixed") or {})
    return SweepProfile(**{**profile.__dict__, "budget": budget, "resources": resources, "fixed": fixed})
