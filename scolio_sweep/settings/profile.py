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
starts. The file is read through `scolio_core.safe_yaml` (size, depth and node caps, no aliases); every number
is finite and within its section's `LIMITS`; every point to evaluate lies in its distributions and builds a
config; the metric is one the loop reports on val (`scolio_core.names.check_metric_name`). Command-line
overrides get the same checks (`apply_overrides` -> `check_profile`). The distributions themselves live in
`scolio_sweep.search.space`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from scolio_core.config import MAX_ENSEMBLE_MEMBERS, ExperimentConfig, build_strict
from scolio_core.data.stand_in import SynthSettings
from scolio_core.errors import ConfigError
from scolio_core.names import SELECTION_MODE, check_metric_name
from scolio_core.safe_yaml import brief, cut, load_yaml_file
from scolio_sweep.search.rungs import rung_milestones
from scolio_sweep.search.space import (
    Choice,
    ConditionalSpace,
    Distribution,
    is_number,
    parse_distribution,
)
from scolio_sweep.settings.run_settings import check_name

# The YAML profiles sit beside the entry scripts users run (sweeps/ in the checkout).
PROFILE_DIR = Path(__file__).resolve().parents[2] / "sweeps"

# Every number a profile holds is finite and within an inclusive (low, high) bound, each section's LIMITS: far
# beyond any real sweep, so that a typo (1e21 trials, NaN CPUs, an infinite interval) is refused before Ray
# starts instead of failing inside it. Limits = {field: (low, high)}.
Limits = dict[str, tuple[float, float]]
SEED_LIMITS: tuple[float, float] = (0, 2**32 - 1)  # numpy's seed range
SYNTH_LIMITS: Limits = {"num_sequences": (1, 100_000), "frames": (1, 10_000), "seed": SEED_LIMITS}
MAX_POINTS = 1_000  # points_to_evaluate entries
MAX_DESCRIPTION = 2_000  # characters


# ----------------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class Budget:
    num_samples: int = 8
    max_concurrent_trials: int = 2
    # true: trials run in batches of max_concurrent_trials and early stopping compares only with earlier
    # batches, so a re-run gives the same suggestions, stops and winner (scolio_sweep/search/searchers.py); false: Ray's
    # asynchronous ASHA, faster (no idle slots) but what it stops depends on the machine's timing.
    reproducible: bool = True
    LIMITS: ClassVar[Limits] = {"num_samples": (1, 100_000), "max_concurrent_trials": (1, 4_096)}

    def validate(self, where: str) -> None:
        _check_limits(self, self.LIMITS, where)


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
    # The factor's lower bound is > 1 (checked below); how close to 1 it may come depends on the trial's
    # evaluations: the profile check refuses more than MAX_RUNGS rungs (search/rungs.py).
    LIMITS: ClassVar[Limits] = {"grace_period": (1, 1_000_000), "reduction_factor": (1, 1_000)}

    def validate(self, where: str) -> None:
        _check_limits(self, self.LIMITS, where)
        if not self.reduction_factor > 1:
            raise ConfigError(f"{where}.reduction_factor must be > 1, got {self.reduction_factor!r}")


@dataclass(frozen=True)
class Confirmation:
    """Confirmation before selection (scolio_sweep/stages/confirm.py): the top `candidates` configurations by search val
    are re-trained with up to `seeds` new training seeds each, and the one with the best mean val over those seeds
    alone is selected. The search's own val is a maximum over trials and evaluations on one small val set,
    biased upwards; fresh seeds are not. 0 candidates: off (the search's best trial is selected).

    `rule`: `fixed` trains every candidate with every seed; `racing` trains one seed per round and drops,
    between rounds, the candidates a paired test over val sequences shows worse than the leader at `alpha`
    (scolio_sweep/search/racing.py). `tested`: `ensemble` tests the selected configuration's re-trainings as one
    model (the mean of their logits), `first-seed` its first re-training alone. What the benchmark measured
    for each (benchmarks/selection.py) is in benchmarks/README.md."""

    candidates: int = 0
    seeds: int = 2
    rule: str = "fixed"
    alpha: float = 0.1
    tested: str = "ensemble"
    LIMITS: ClassVar[Limits] = {"candidates": (0, 1_000), "seeds": (1, 1_000), "alpha": (0, 1)}
    RULES: ClassVar[tuple[str, ...]] = ("fixed", "racing")
    TESTED: ClassVar[tuple[str, ...]] = ("ensemble", "first-seed")

    def validate(self, where: str) -> None:
        _check_limits(self, self.LIMITS, where)
        for name, allowed in (("rule", self.RULES), ("tested", self.TESTED)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{where}.{name} must be one of {', '.join(allowed)}, got "
                                  f"{brief(getattr(self, name))}")
        # alpha 0 never drops anyone and 1 drops a candidate that is better on the loss: neither is a test
        if not 0 < self.alpha < 1:
            raise ConfigError(f"{where}.alpha must be strictly between 0 and 1, got {self.alpha!r}")
        if self.enabled and self.rule == "racing" and (self.candidates < 2 or self.seeds < 2):
            raise ConfigError(f"{where}: rule racing needs at least 2 candidates and 2 seeds (rounds to drop "
                              f"between), got {self.candidates} and {self.seeds}; use rule fixed")
        if self.enabled and self.tested == "ensemble" and self.seeds > MAX_ENSEMBLE_MEMBERS:
            raise ConfigError(f"{where}.seeds: a tested ensemble holds at most {MAX_ENSEMBLE_MEMBERS} members, got "
                              f"{self.seeds}; fewer seeds, or tested: first-seed")

    @property
    def enabled(self) -> bool:
        return self.candidates > 0


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 1  # > 1: a data-parallel trial (scolio_sweep/trainables/distributed.py)
    LIMITS: ClassVar[Limits] = {"cpus_per_trial": (0, 1_024), "gpus_per_trial": (0, 64),
                                "workers_per_trial": (1, 1_024)}

    def validate(self, where: str) -> None:
        _check_limits(self, self.LIMITS, where)


MIN_SAMPLING_INTERVAL_S = 0.1


@dataclass(frozen=True)
class Monitoring:
    """System metrics on trial runs (scolio_sweep/trainables/system_metrics.py): CPU, memory, disk, network, and GPU where
    NVML finds one, under MLflow's `system/` names, averaged over each report's interval."""

    system_metrics: bool = True
    sampling_interval_s: float = 2.0  # a sample costs ~0.5 ms of CPU; each report gets the mean since the last
    # Faster sampling only burns CPU: psutil's CPU percentage and NVML's utilisation are window means already.
    LIMITS: ClassVar[Limits] = {"sampling_interval_s": (MIN_SAMPLING_INTERVAL_S, 3_600)}

    def validate(self, where: str) -> None:
        _check_limits(self, self.LIMITS, where)

    def trial_interval_s(self) -> float | None:
        """What a trial's `system_metrics_interval_s` gets: the interval, or None when switched off."""
        return float(self.sampling_interval_s) if self.system_metrics else None


def _within(where: str, key: str, value: Any, low: float, high: float) -> None:
    """A finite number in [low, high], or a ConfigError naming `<where>.<key>` (bool is not a number)."""
    if not is_number(value) or not math.isfinite(value):
        raise ConfigError(f"{where}.{key} must be a finite number, got {brief(value)}")
    if not low <= value <= high:
        bound = f">= {low}" if value < low else f"<= {high}"
        raise ConfigError(f"{where}.{key} must be {bound}, got {brief(value)}")


def _check_limits(section: Any, limits: Limits, where: str) -> None:
    for key, (low, high) in limits.items():
        _within(where, key, getattr(section, key), low, high)


def _build_section(cls: type, raw: Any, where: str):
    """A section dataclass from YAML through the one strict builder (`scolio_core.config.build_strict`), then
    its own checks. Ints stay ints in float fields: the values are MLflow params a resumed sweep must match."""
    section = build_strict(cls, raw, where, int_as_float=False)
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
    # Not a YAML key: whether the YAML has an asha section (DRF grids have none: no scheduler), so the rung
    # check runs again after command-line overrides exactly where it ran on the YAML.
    stops_early: bool = field(default=True, compare=False)

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


def _parse_search(raw: Any, source: str) -> dict[str, Distribution]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: search must be a mapping of dotted config keys, got {brief(raw)}")
    probe = ExperimentConfig().to_flat()
    search: dict[str, Distribution] = {}
    for key, spec in raw.items():
        if key not in probe:
            raise ConfigError(f"{source}: search.{cut(str(key), 60)}: not an ExperimentConfig field")
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
    # A checkout (or an editable install) has sweeps/ beside the package; a wheel installed into site-packages
    # does not, and then the profiles are those of the checkout or job working dir the command runs in.
    folder = PROFILE_DIR if PROFILE_DIR.is_dir() else Path.cwd() / "sweeps"
    if not path.suffix:
        path = folder / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"sweep profile {brief(name_or_path)} not found (known: {', '.join(known)})")
    raw = load_yaml_file(path) or {}  # bounded: size, depth, no aliases (scolio_core/safe_yaml.py)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: a profile is a mapping, got {type(raw).__name__}")
    allowed = [f.name for f in dataclasses.fields(SweepProfile) if f.name != "stops_early"]
    unknown = [key for key in raw if key not in allowed]
    if unknown:
        raise ConfigError(f"{path}: {cut(str(unknown[0]), 60)}: unknown profile key (known: {', '.join(allowed)})")
    for required in ("name", "metric", "mode", "fixed", "search"):
        if required not in raw:
            raise ConfigError(f"{path}: profile needs {required!r}")
    name = check_name(raw["name"], f"{path}: name")
    metric, mode = raw["metric"], raw["mode"]
    if not isinstance(metric, str):
        raise ConfigError(f"{path}: metric must be a string, got {brief(metric)}")
    try:
        check_metric_name(metric)  # what the training loop reports on val (scolio_core/names.py)
    except ConfigError as exc:
        raise ConfigError(f"{path}: metric: {exc}") from None
    if mode != SELECTION_MODE:  # every selectable metric is a score: selecting its minimum picks the worst model
        raise ConfigError(f"{path}: mode must be {SELECTION_MODE} (every selectable metric is higher-is-better), "
                          f"got {brief(mode)}")
    fixed = raw["fixed"]
    if not isinstance(fixed, Mapping) or not all(isinstance(key, str) for key in fixed):
        raise ConfigError(f"{path}: fixed must be a mapping of dotted config keys, got {brief(fixed)}")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not SEED_LIMITS[0] <= seed <= SEED_LIMITS[1]:
        raise ConfigError(f"{path}: seed must be an integer from {SEED_LIMITS[0]} to {SEED_LIMITS[1]}, "
                          f"got {brief(seed)}")
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise ConfigError(f"{path}: description must be a string of at most {MAX_DESCRIPTION} characters, "
                          f"got {brief(description)}")
    search = _parse_search(raw["search"], str(path))
    points = raw.get("points_to_evaluate") or []
    if (not isinstance(points, list) or len(points) > MAX_POINTS
            or not all(isinstance(p, Mapping) for p in points)):
        raise ConfigError(f"{path}: points_to_evaluate must be a list of at most {MAX_POINTS} mappings")
    synth = _build_section(SynthSettings, raw.get("synth"), f"{path}: synth")
    _check_limits(synth, SYNTH_LIMITS, f"{path}: synth")
    profile = SweepProfile(
        name=name, metric=metric, mode=mode, fixed=dict(fixed),
        search=search, points_to_evaluate=[dict(p) for p in points], synth=synth,
        budget=_build_section(Budget, raw.get("budget"), f"{path}: budget"),
        asha=_build_section(AshaSchedule, raw.get("asha"), f"{path}: asha"),
        confirm=_build_section(Confirmation, raw.get("confirm"), f"{path}: confirm"),
        resources=_build_section(Resources, raw.get("resources"), f"{path}: resources"),
        monitoring=_build_section(Monitoring, raw.get("monitoring"), f"{path}: monitoring"),
        seed=seed, description=description, stops_early="asha" in raw)
    check_profile(profile, str(path))
    if profile.stops_early:
        check_rungs_after_decay(profile, str(path))
    return profile


def check_profile(profile: SweepProfile, where: str) -> None:
    """The checks across sections, run on the YAML and again after command-line overrides: the fixed fields build
    a config; every point to evaluate lies in its distributions and builds a config with them; the schedule has
    few rungs; confirmation does not fight a searched seed."""
    try:
        base = profile.base_config()
    except ConfigError as exc:
        raise ConfigError(f"{where}: fixed: {exc}") from None
    for index, point in enumerate(profile.points_to_evaluate):
        at = f"{where}: points_to_evaluate[{index}]"
        for key, value in point.items():
            dist = profile.search.get(key)
            if dist is None:
                raise ConfigError(f"{at}.{cut(str(key), 60)}: not a key of the search space "
                                  f"({', '.join(profile.search)})")
            if not dist.contains(value):
                raise ConfigError(f"{at}.{key}: {brief(value)} is not in search.{key} {brief(dist.to_spec())}")
        try:
            base.replace(**point)
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc}") from None
    try:  # bounded: ConfigError past MAX_RUNGS rungs (a reduction factor a hair above 1)
        rung_milestones(profile.evaluations_per_trial, profile.asha.grace_period, profile.asha.reduction_factor)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    both = sorted(set(profile.fixed) & set(profile.search))
    if both:  # the search would silently override the fixed value
        raise ConfigError(f"{where}: {cut(both[0], 60)} is both fixed and searched; keep one")
    if profile.confirm.enabled and "train.seed" in profile.search:
        raise ConfigError(f"{where}: confirm: re-trains candidates with new train.seed values, but the profile "
                          "searches train.seed; fix it or set confirm.candidates: 0")


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


def define_search_space(profile: SweepProfile) -> ConditionalSpace:
    return ConditionalSpace(profile.search, profile.base_config().input.representation)


def for_deferred_test(profile: SweepProfile) -> tuple[SweepProfile, str]:
    """A sweep whose test is deferred to its finetune stage tests one model: the finetune warm-starts from the
    selected configuration's first re-training and compares one model with one on val, so the ensemble rule
    becomes `first-seed` there. Returns the profile and the note to print ("" when nothing changed)."""
    if not (profile.confirm.enabled and profile.confirm.tested == "ensemble"):
        return profile, ""
    note = ("note: this study's test is deferred to its finetune stage, which warm-starts from and compares single "
            "models: the sweep's selection is its chosen configuration's first re-training (confirm.tested: "
            "first-seed), not the seed ensemble")
    return profile.replace(confirm=dataclasses.replace(profile.confirm, tested="first-seed")), note


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
    changed = profile.replace(budget=budget, resources=resources, confirm=confirm,
                              fixed={**profile.fixed, **(fixed or {})})
    where = f"profile {profile.name} with the command line's flags"
    check_profile(changed, where)
    if changed.stops_early:  # e.g. --set train.milestones=[20] moves the last decay past a rung
        check_rungs_after_decay(changed, where)
    return changed


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
