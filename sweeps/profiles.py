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
    confirm: {candidates: 2, seeds: 2}   # the top 2 by val re-trained with 2 new seeds before selection
    resources: {cpus_per_trial: 1, gpus_per_trial: 0, workers_per_trial: 1}
    monitoring: {system_metrics: true, sampling_interval_s: 2.0}   # MLflow's system/* metrics on trial runs

Every section is a frozen dataclass and every search entry a `Distribution`: an unknown key or a bad value
anywhere is a one-line `ConfigError` naming the file and the key, raised by `load_profile` before Ray
starts. This module is the only place that decodes `{choice|uniform|loguniform|int: [...]}`.

The search space is conditional: skeleton-map knobs (`SKELETON_ONLY_FIELDS`) are sampled only when the
chosen representation renders skeleton maps (Optuna define-by-run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from scolio_core.config import SKELETON_ONLY_FIELDS, SKELETON_REPRESENTATIONS, ExperimentConfig
from scolio_core.errors import ConfigError

PROFILE_DIR = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------------- distributions
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


Distribution = Union[Choice, Uniform, IntRange]
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_distribution(spec: Any, where: str) -> Distribution:
    """`{choice: [...]}`, `{uniform: [low, high]}`, `{loguniform: [low, high]}` or `{int: [low, high]}`."""
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise ConfigError(f"{where} must be one of {{{'|'.join(DISTRIBUTIONS)}: [...]}}, got {spec!r}")
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.choice needs a non-empty list, got {values!r}")
        return Choice(tuple(values))
    if not isinstance(values, list) or len(values) != 2 or not all(_number(v) for v in values):
        raise ConfigError(f"{where}.{kind} needs a list [low, high] of numbers, got {values!r}")
    low, high = values
    if not low < high:
        raise ConfigError(f"{where}.{kind}: low {low!r} must be below high {high!r}")
    if kind == "int":
        if not all(isinstance(v, int) for v in values):
            raise ConfigError(f"{where}.int needs integer bounds, got {values!r}")
        return IntRange(low, high)
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}.loguniform needs low > 0, got {low!r}")
    return Uniform(low, high, log=kind == "loguniform")


# ----------------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class Budget:
    num_samples: int = 8
    max_concurrent_trials: int = 2
    # true: trials run in batches of max_concurrent_trials and early stopping compares only with earlier
    # batches, so a re-run gives the same suggestions, stops and winner (sweeps/searchers.py); false: Ray's
    # asynchronous ASHA, faster (no idle slots) but what it stops depends on the machine's timing.
    reproducible: bool = True

    def validate(self, where: str) -> None:
        _at_least(where, "num_samples", self.num_samples, 1)
        _at_least(where, "max_concurrent_trials", self.max_concurrent_trials, 1)


def rung_milestones(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The evaluations where trials are compared: grace * rf^k below `max_t` (ASHA's rungs)."""
    rungs, rung = [], float(grace_period)
    while rung < max_t:
        rungs.append(int(round(rung)))
        rung *= reduction_factor
    return sorted(set(rungs))


@dataclass(frozen=True)
class AshaSchedule:
    """Early stopping (successive halving), counted in evaluations (Tune's training_iteration).

    Its rungs must fall after the schedule's last learning-rate decay (`check_rungs_after_decay`): before it
    a score does not predict the final rank. On the recorded grid (benchmarks/search_record_2026-11-22.json,
    decays at steps 160 and 200 of 240) the Spearman agreement of the best score so far with the final best is
    0.03-0.44 up to the first decay, 0.59 between the decays and 0.95 after the last; only after the last
    does a top-third cut keep all three best points. A grace period of at least the trial's evaluations
    switches early stopping off.
    """

    grace_period: int = 1
    reduction_factor: float = 2.0

    def validate(self, where: str) -> None:
        _at_least(where, "grace_period", self.grace_period, 1)
        if not self.reduction_factor > 1:
            raise ConfigError(f"{where}.reduction_factor must be > 1, got {self.reduction_factor!r}")


@dataclass(frozen=True)
class Confirmation:
    """Confirmation before selection (sweeps/confirm.py): the top `candidates` configurations by search val
    are re-trained with `seeds` new training seeds each, and the one with the best mean val over those seeds
    alone is selected. The search's own val is a maximum over trials and evaluations on one small val set,
    biased upwards; fresh seeds are not. 0 candidates: off (the search's best trial is selected)."""

    candidates: int = 0
    seeds: int = 2

    def validate(self, where: str) -> None:
        _at_least(where, "candidates", self.candidates, 0)
        _at_least(where, "seeds", self.seeds, 1)

    @property
    def enabled(self) -> bool:
        return self.candidates > 0


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 1  # > 1: a data-parallel trial (trainables/distributed.py)

    def validate(self, where: str) -> None:
        _at_least(where, "cpus_per_trial", self.cpus_per_trial, 0)
        _at_least(where, "gpus_per_trial", self.gpus_per_trial, 0)
        _at_least(where, "workers_per_trial", self.workers_per_trial, 1)


@dataclass(frozen=True)
class SynthSettings:
    """The synthetic stand-in a sweep builds when no --data-root is given."""

    num_sequences: int = 240
    frames: int = 40
    train_ratio: str = "1:1:8"
    seed: int = 0

    def validate(self, where: str) -> None:
        from scolio_core.data.synth import parse_ratio

        _at_least(where, "num_sequences", self.num_sequences, 1)
        _at_least(where, "frames", self.frames, 1)
        try:
            parse_ratio(self.train_ratio)
        except ConfigError as exc:
            raise ConfigError(f"{where}.train_ratio: {exc}") from None

    @property
    def cache_key(self) -> str:
        return (f"synth-n{self.num_sequences}-t{self.frames}-r{self.train_ratio.replace(':', '')}"
                f"-s{self.seed}")


MIN_SAMPLING_INTERVAL_S = 0.1


@dataclass(frozen=True)
class Monitoring:
    """System metrics on trial runs (trainables/system_metrics.py): CPU, memory, disk, network, and GPU where
    NVML finds one, under MLflow's `system/` names, averaged over each report's interval."""

    system_metrics: bool = True
    sampling_interval_s: float = 2.0  # a sample costs ~0.5 ms of CPU; each report gets the mean since the last

    def validate(self, where: str) -> None:
        # Faster sampling only burns CPU: psutil's CPU percentage and NVML's utilisation are window means already.
        _at_least(where, "sampling_interval_s", self.sampling_interval_s, MIN_SAMPLING_INTERVAL_S)

    def trial_interval_s(self) -> float | None:
        """What a trial's `system_metrics_interval_s` gets: the interval, or None when switched off."""
        return float(self.sampling_interval_s) if self.system_metrics else None


def _at_least(where: str, key: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{where}.{key} must be >= {low}, got {value!r}")


def _build_section(cls: type, raw: Any, where: str):
    """A section dataclass from YAML: unknown keys and wrongly typed values are refused, naming the key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(fields)})")
        kind = fields[key].type  # a string under `from __future__ import annotations`
        if kind == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
            raise ConfigError(f"{where}.{key} must be an integer, got {value!r}")
        if kind == "float" and not _number(value):
            raise ConfigError(f"{where}.{key} must be a number, got {value!r}")
        if kind == "bool" and not isinstance(value, bool):
            raise ConfigError(f"{where}.{key} must be true or false, got {value!r}")
        if kind == "str" and not isinstance(value, str):
            raise ConfigError(f"{where}.{key} must be a string, got {value!r}")
        values[key] = value
    section = cls(**values)
    section.validate(where)
    return section


# ----------------------------------------------------------------------------------------- the profile
@dataclass(frozen=True)
class SweepProfile:
    name: str
    metric: str
    mode: str
    fixed: dict[str, Any]
    search: dict[str, Distribution]
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)
    synth: SynthSettings = field(default_factory=SynthSettings)
    budget: Budget = field(default_factory=Budget)
    asha: AshaSchedule = field(default_factory=AshaSchedule)
    confirm: Confirmation = field(default_factory=Confirmation)
    resources: Resources = field(default_factory=Resources)
    monitoring: Monitoring = field(default_factory=Monitoring)
    seed: int = 0
    description: str = ""

    @property
    def num_samples(self) -> int:
        return self.budget.num_samples

    @property
    def max_concurrent_trials(self) -> int:
        return self.budget.max_concurrent_trials

    @property
    def evaluations_per_trial(self) -> int:
        """Tune's training_iteration budget: one report per evaluation."""
        train = self.base_config().train
        iterations = train.iterations
        if "train.iterations" in self.search:  # the budget is the largest searched length
            iterations = max(int(v) for v in self.search["train.iterations"].edge_values())
        return -(-iterations // train.eval_every)

    def base_config(self) -> ExperimentConfig:
        return ExperimentConfig.from_dict(self.fixed)

    def representations(self) -> list[str]:
        """Every representation a trial of this profile can use."""
        searched = self.search.get("input.representation")
        return searched.edge_values() if searched else [self.base_config().input.representation]

    def search_specs(self) -> dict[str, dict[str, list]]:
        """The search space as YAML-shaped data (how MLflow params record it)."""
        return {key: dist.to_spec() for key, dist in self.search.items()}

    def replace(self, **changes: Any) -> "SweepProfile":
        return dataclasses.replace(self, **changes)


def _is_skeleton_only(key: str) -> bool:
    section, _, name = key.partition(".")
    return section == "input" and name in SKELETON_ONLY_FIELDS


def _parse_search(raw: Any, source: str) -> dict[str, Distribution]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: search must be a mapping of dotted config keys, got {raw!r}")
    probe = ExperimentConfig().to_flat()
    search: dict[str, Distribution] = {}
    for key, spec in raw.items():
        if key not in probe:
            raise ConfigError(f"{source}: search.{key}: not an ExperimentConfig field")
        dist = parse_distribution(spec, f"{source}: search.{key}")
        if key == "input.representation" and not isinstance(dist, Choice):
            raise ConfigError(f"{source}: search.input.representation must be a choice")
        # Every value the space can produce must build a valid config (e.g. sigma > 0).
        for value in dist.edge_values():
            try:
                ExperimentConfig().replace(**{key: value})
            except ConfigError as exc:
                raise ConfigError(f"{source}: search.{key}: {exc}") from None
        search[key] = dist
    return search


def load_profile(name_or_path: str) -> SweepProfile:
    """A profile by name (`smoke`, `demo`, `paper` under sweeps/) or by path; strict about every key."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise ConfigError(f"sweep profile {name_or_path!r} not found (known: {', '.join(known)})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: a profile is a mapping, got {type(raw).__name__}")
    allowed = [f.name for f in dataclasses.fields(SweepProfile)]
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown profile key (known: {', '.join(allowed)})")
    for required in ("name", "metric", "mode", "fixed", "search"):
        if required not in raw:
            raise ConfigError(f"{path}: profile needs {required!r}")
    if raw["mode"] not in ("min", "max"):
        raise ConfigError(f"{path}: mode must be min or max, got {raw['mode']!r}")
    if not isinstance(raw["fixed"], Mapping):
        raise ConfigError(f"{path}: fixed must be a mapping of dotted config keys, got {raw['fixed']!r}")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"{path}: seed must be an integer, got {seed!r}")
    search = _parse_search(raw["search"], str(path))
    points = raw.get("points_to_evaluate") or []
    if not isinstance(points, list) or not all(isinstance(p, Mapping) for p in points):
        raise ConfigError(f"{path}: points_to_evaluate must be a list of mappings")
    for point in points:
        extra = sorted(set(point) - set(search))
        if extra:
            raise ConfigError(f"{path}: points_to_evaluate names keys outside the search space: {extra}")
    profile = SweepProfile(
        name=str(raw["name"]), metric=str(raw["metric"]), mode=raw["mode"], fixed=dict(raw["fixed"]),
        search=search, points_to_evaluate=[dict(p) for p in points],
        synth=_build_section(SynthSettings, raw.get("synth"), f"{path}: synth"),
        budget=_build_section(Budget, raw.get("budget"), f"{path}: budget"),
        asha=_build_section(AshaSchedule, raw.get("asha"), f"{path}: asha"),
        confirm=_build_section(Confirmation, raw.get("confirm"), f"{path}: confirm"),
        resources=_build_section(Resources, raw.get("resources"), f"{path}: resources"),
        monitoring=_build_section(Monitoring, raw.get("monitoring"), f"{path}: monitoring"),
        seed=seed, description=str(raw.get("description", "")))
    try:
        profile.base_config()
    except ConfigError as exc:
        raise ConfigError(f"{path}: fixed: {exc}") from None
    if "asha" in raw:  # a profile that stops early (DRF grids have no asha section: no scheduler)
        check_rungs_after_decay(profile, str(path))
    if profile.confirm.enabled and "train.seed" in profile.search:
        raise ConfigError(f"{path}: confirm: re-trains candidates with new train.seed values, but the profile "
                          "searches train.seed; fix it or set confirm.candidates: 0")
    return profile


def check_rungs_after_decay(profile: SweepProfile, where: str) -> None:
    """Refuse early-stopping rungs placed before the last learning-rate milestone (AshaSchedule's evidence)."""
    train = profile.base_config().train
    if not profile.search or not train.milestones or "train.milestones" in profile.search:
        return
    rungs = rung_milestones(profile.evaluations_per_trial, profile.asha.grace_period, profile.asha.reduction_factor)
    last_decay = max(train.milestones)
    early = [rung for rung in rungs if rung * train.eval_every <= last_decay]
    if early:
        needed = last_decay // train.eval_every + 1
        raise ConfigError(
            f"{where}: asha: the rung at evaluation {early[0]} (step {early[0] * train.eval_every}) comes before the "
            f"last learning-rate decay (step {last_decay}), where scores do not predict the final rank "
            f"(benchmarks/README.md: Spearman 0.59 between the decays, 0.95 after the last); set "
            f"asha.grace_period to at least {needed}, or to {profile.evaluations_per_trial} for no early stopping")


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
            if _is_skeleton_only(key) and representation not in SKELETON_REPRESENTATIONS:
                continue
            dist.suggest(trial, key)


def define_search_space(profile: SweepProfile) -> ConditionalSpace:
    return ConditionalSpace(profile.search, profile.base_config().input.representation)


def apply_overrides(profile: SweepProfile, *, num_samples: int | None = None,
                    max_concurrent_trials: int | None = None, gpus_per_trial: float | None = None,
                    cpus_per_trial: float | None = None, workers_per_trial: int | None = None,
                    fixed: Mapping[str, Any] | None = None, confirm_candidates: int | None = None,
                    confirm_seeds: int | None = None) -> SweepProfile:
    """CLI flags override profile fields (num_samples, gpus_per_trial, ...); checked like the YAML."""
    budget = dataclasses.replace(profile.budget, **_given(num_samples=num_samples,
                                                          max_concurrent_trials=max_concurrent_trials))
    resources = dataclasses.replace(profile.resources, **_given(gpus_per_trial=gpus_per_trial,
                                                                cpus_per_trial=cpus_per_trial,
                                                                workers_per_trial=workers_per_trial))
    confirm = dataclasses.replace(profile.confirm, **_given(candidates=confirm_candidates, seeds=confirm_seeds))
    budget.validate("--budget")
    resources.validate("--resources")
    confirm.validate("--confirm")
    return profile.replace(budget=budget, resources=resources, confirm=confirm,
                           fixed={**profile.fixed, **(fixed or {})})


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
