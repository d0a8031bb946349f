"""The one configuration object: every tunable knob of a run is a field here.

`ExperimentConfig` is what `scolio train --config` reads, what a Tune trial receives (as dotted keys),
what a checkpoint's contract records and what MLflow logs as params. Building it from a dict is strict:
an unknown key raises and names it (a YAML typo must never silently do nothing).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, TypeVar

from scolio_core.errors import ConfigError
from scolio_core.safe_yaml import brief, cut, load_yaml_file, load_yaml_text

_Section = TypeVar("_Section")

SKELETON_REPRESENTATIONS = ("full-body", "body-only", "head-lite")
REPRESENTATIONS = SKELETON_REPRESENTATIONS + ("silhouette",)
ALIGNMENTS = ("aligned", "opengait")
MAP_DTYPES = ("uint8", "float32")
# InputConfig fields that only shape rendered skeleton maps (meaningless for silhouettes).
SKELETON_ONLY_FIELDS = ("sigma", "joint_weight", "confidence_weighting", "min_confidence", "impute_neighbors",
                        "canvas_size", "alignment", "dtype")


@dataclass(frozen=True)
class DataConfig:
    """Where the data lives and how the validation set is carved from TRAIN_SET.

    `root` holds the pose and silhouette roots of the release layout (`<id>/<class>/<view>/<file>.pkl`).
    An empty `root` means: use the synthetic stand-in (sweeps synthesise it into a cache).
    """

    root: str = ""
    pose_dir: str = "Scoliosis1K-pose-pkl"
    silhouette_dir: str = "Scoliosis1K-sil-pkl"
    partition: str = "Scoliosis1K_118.json"  # absolute, or relative to `root`
    val_fraction: float = 0.15
    val_seed: int = 0

    def validate(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")

    def partition_path(self) -> Path:
        path = Path(self.partition)
        return path if path.is_absolute() or not self.root else Path(self.root) / path

    def modality_root(self, modality: str) -> Path:
        sub = self.pose_dir if modality == "skeleton" else self.silhouette_dir
        path = Path(sub)
        return path if path.is_absolute() else Path(self.root) / path


@dataclass(frozen=True)
class InputConfig:
    """What the network sees. `representation: silhouette` feeds silhouettes (no rendering);
    the other representations render 2-channel skeleton maps (channel 0 limbs, 1 joints) on the fly."""

    representation: str = "body-only"
    sigma: float = 8.0  # Gaussian width in canvas pixels
    joint_weight: float = 1.0  # peak of the joint map relative to the limb map
    confidence_weighting: bool = True  # scale Gaussians by keypoint confidence
    min_confidence: float = 1e-3  # joints below this are not drawn
    impute_neighbors: int = 4  # kNN (over frames) imputation of missing keypoints
    canvas_size: int = 128
    alignment: str = "aligned"  # aligned: one crop box for both channels; opengait: per-channel crops
    map_size: int = 64  # crop is resized to map_size x map_size
    side_crop: int = 10  # columns cut from each side after resizing (64 -> 44)
    dtype: str = "uint8"  # uint8: quantised to 256 levels like exported files; float32: not quantised

    def validate(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise ConfigError(
                f"input.representation must be one of {list(REPRESENTATIONS)}, got {self.representation!r}")
        if not self.sigma > 0:
            raise ConfigError(f"input.sigma must be > 0 canvas pixels, got {self.sigma}")
        if not self.joint_weight >= 0:
            raise ConfigError(f"input.joint_weight must be >= 0, got {self.joint_weight}")
        if self.alignment not in ALIGNMENTS:
            raise ConfigError(f"input.alignment must be one of {list(ALIGNMENTS)}, got {self.alignment!r}")
        if self.dtype not in MAP_DTYPES:
            raise ConfigError(f"input.dtype must be one of {list(MAP_DTYPES)}, got {self.dtype!r}")
        if self.impute_neighbors < 1:
            raise ConfigError(f"input.impute_neighbors must be >= 1, got {self.impute_neighbors}")
        if not 0 <= 2 * self.side_crop < self.map_size:
            raise ConfigError(f"input.side_crop={self.side_crop} leaves no columns of map_size={self.map_size}")

    @property
    def modality(self) -> str:
        return "silhouette" if self.representation == "silhouette" else "skeleton"

    @property
    def in_channels(self) -> int:
        return 1 if self.modality == "silhouette" else 2

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (self.map_size, self.map_size - 2 * self.side_crop)


# The one table of models: name -> what it consumes besides frames (the one place that says DRF needs PAVs).
# Lives here, the lowest layer, because config validation, data loading and prediction all ask it;
# scolio_core.models registers one builder per name of it (tests/test_models.py checks they agree).
MODEL_SCONET = "sconet"
MODEL_DRF = "drf"
MODEL_INPUTS: dict[str, tuple[str, ...]] = {MODEL_SCONET: (), MODEL_DRF: ("pav",)}


@dataclass(frozen=True)
class ModelConfig:
    """ScoNet-MT (silhouette), ScoNet-MT-ske (skeleton maps) or DRF (skeleton maps + PAV-guided attention)."""

    name: str = MODEL_SCONET  # a key of MODEL_INPUTS: sconet | drf
    width: int = 64  # stem width; stages are width x [1, 2, 4, 8]; the published model uses 64
    embed_dim: int = 256
    parts: int = 16
    use_pga: bool = True  # drf only: false gives the ScoNet-MT-ske control with identical everything else

    @property
    def needs_pav(self) -> bool:
        """Whether the model consumes per-sequence PAVs (computed from poses) beside its frames."""
        return "pav" in MODEL_INPUTS[self.name]

    def validate(self) -> None:
        if self.name not in MODEL_INPUTS:
            raise ConfigError(f"model.name must be one of {list(MODEL_INPUTS)}, got {self.name!r}")
        if self.width < 1 or self.embed_dim < 1 or self.parts < 1:
            raise ConfigError("model.width, model.embed_dim and model.parts must be positive")


@dataclass(frozen=True)
class LossConfig:
    class_weighting: str = "plain"  # plain | weighted (cross-entropy class weights)
    class_weights: tuple[float, float, float] | None = None  # None + weighted: inverse train frequency
    triplet_weight: float = 1.0
    ce_weight: float = 1.0
    margin: float = 0.2
    scale: float = 16.0
    label_smoothing: float = 0.1

    def validate(self) -> None:
        if self.class_weighting not in ("plain", "weighted"):
            raise ConfigError(f"loss.class_weighting must be 'plain' or 'weighted', got {self.class_weighting!r}")
        if self.class_weights is not None and (len(self.class_weights) != 3 or min(self.class_weights) <= 0):
            raise ConfigError(f"loss.class_weights must be 3 positive numbers, got {self.class_weights}")


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "multistep"  # multistep | cosine
    milestones: tuple[int, ...] = (10000, 14000, 18000)
    gamma: float = 0.1
    warmup_iterations: int = 0
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    iterations: int = 20000
    batch_ids: int = 8  # P
    batch_samples: int = 8  # K
    sampler: str = "pk"  # pk | balanced (class-balanced choice of the P ids)
    frames: int = 30
    eval_every: int = 1000
    max_eval_frames: int = 720
    eval_batch_size: int = 8
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # only takes effect on CUDA
    init_from: str = ""  # finetune: baseline checkpoint directory to warm-start from
    allow_contract_change: bool = False  # finetune: accept input settings that differ from the baseline's

    def validate(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"train.optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.scheduler not in ("multistep", "cosine"):
            raise ConfigError(f"train.scheduler must be 'multistep' or 'cosine', got {self.scheduler!r}")
        if self.sampler not in ("pk", "balanced"):
            raise ConfigError(f"train.sampler must be 'pk' or 'balanced', got {self.sampler!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        for name in ("iterations", "batch_ids", "batch_samples", "frames", "eval_every", "max_eval_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.warmup_iterations < 0 or self.warmup_iterations >= self.iterations:
            raise ConfigError(f"train.warmup_iterations must be in [0, iterations), got {self.warmup_iterations}")


# A seed ensemble (scolio_core/training/ensemble.py) is a handful of seeds; the cap keeps a look's ledger record
# (which lists every member's hash) within MLflow's tag limits (8,000 characters on a parent run's mirror). Here,
# not in ensemble.py, so that a profile check can refuse more seeds before compute without importing torch.
MAX_ENSEMBLE_MEMBERS = 32

# Upper bounds on the sizes that decide how much memory a run allocates, each 8-16x the published recipe's
# value (in the comment): a hostile checkpoint contract or profile (model.width 1e6 asks torch for 36 TB) is
# refused in one line before anything is allocated, and no real recipe comes near them.
SIZE_LIMITS: dict[str, int] = {
    "input.canvas_size": 2048,  # 128
    "input.map_size": 1024,  # 64
    "input.impute_neighbors": 64,  # 4
    "model.width": 1024,  # 64
    "model.embed_dim": 4096,  # 256
    "model.parts": 256,  # 16
    "train.frames": 1024,  # 30
    "train.max_eval_frames": 100_000,  # 720
    "train.batch_ids": 1024,  # 8
    "train.batch_samples": 1024,  # 8
    "train.eval_batch_size": 1024,  # 8
    "train.iterations": 10_000_000,  # 20,000
    "train.eval_every": 10_000_000,  # 1,000
    "train.warmup_iterations": 10_000_000,  # 0
}
MAX_MILESTONES = 64  # the published schedule has 3


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "input": InputConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "train": TrainConfig,
}


# ------------------------------------------------------------------------------------- strict building
_SCALARS: dict[type, str] = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
_PLURALS: dict[type, str] = {bool: "booleans", int: "integers", float: "finite numbers", str: "strings"}


def _scalar(kind: type, value: Any, name: str, int_as_float: bool) -> Any:
    """`value` as a `kind` field, or a ConfigError naming the key. bool is never an int or a float (YAML's
    `yes` would otherwise become 1), an int is a float, NaN and infinities are refused."""
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        try:
            number = float(value) if ok else math.nan
        except OverflowError:  # an int beyond the float range
            number = math.nan
        ok = math.isfinite(number)
        if ok and int_as_float:
            value = number
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ConfigError(f"{name} must be {_SCALARS[kind]}, got {brief(value)}")
    return value


def _field_value(hint: Any, value: Any, name: str, int_as_float: bool) -> Any:
    """Check (and coerce) one field's value against its type hint: int, float, bool, str, a tuple of those
    (`tuple[int, ...]` any length, `tuple[float, float, float]` exactly three; a YAML list is accepted) and
    `X | None` of any of them."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint, = [arg for arg in args if arg is not type(None)]  # Optional[X] only: nothing else is built here
        args = typing.get_args(hint)
    if value is None:
        raise ConfigError(f"{name} must not be null")
    if typing.get_origin(hint) is tuple:
        variadic = len(args) == 2 and args[1] is Ellipsis
        items = args[:1] if variadic else args
        if not isinstance(value, (list, tuple)) or (not variadic and len(value) != len(items)):
            size = "" if variadic else f"{len(items)} "
            raise ConfigError(f"{name} must be a list of {size}{_PLURALS[items[0]]}, got {brief(value)}")
        kinds = items * len(value) if variadic else items
        return tuple(_scalar(kind, item, name, int_as_float) for kind, item in zip(kinds, value))
    if hint not in _SCALARS:
        raise TypeError(f"{name}: build_strict cannot build a field of type {hint!r}")
    return _scalar(hint, value, name, int_as_float)


def build_strict(cls: type[_Section], raw: Mapping[str, Any] | None, where: str, *,
                 int_as_float: bool = True) -> _Section:
    """A frozen dataclass from YAML/JSON data, refusing what it does not expect, each error one line naming
    `<where>.<key>`: unknown keys; a bool where an int or float belongs; a float where an int belongs; NaN or
    infinity; a string where a number belongs (and the reverse); null unless the field is Optional; a list of
    the wrong length for a fixed-length tuple. Lists become tuples and, unless `int_as_float` is False, ints
    given for float fields become floats (False keeps them as written, e.g. for values logged verbatim).
    `raw` None is an empty section. Messages show a bounded repr of the value (`safe_yaml.brief`). The class's
    own `validate` is the caller's to run.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {brief(raw)}")
    hints = typing.get_type_hints(cls)
    known = [spec.name for spec in fields(cls)]
    unknown = [key for key in raw if key not in known]
    if unknown:
        keys = ", ".join(f"{where}.{cut(str(key), 60)}" for key in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ConfigError(f"{keys}: unknown key{'s' if len(unknown) > 1 else ''} (known: {', '.join(known)})")
    return cls(**{key: _field_value(hints[key], value, f"{where}.{key}", int_as_float)
                  for key, value in raw.items()})


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    input: InputConfig = field(default_factory=InputConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "ExperimentConfig":
        for key, limit in SIZE_LIMITS.items():
            section, _, name = key.partition(".")
            value = getattr(getattr(self, section), name)
            if value > limit:
                raise ConfigError(f"{key} must be <= {limit} (memory grows with it), got {brief(value)}")
        milestones = self.train.milestones
        limit = SIZE_LIMITS["train.iterations"]
        if len(milestones) > MAX_MILESTONES or any(m < 1 or m > limit for m in milestones):
            raise ConfigError(f"train.milestones must be at most {MAX_MILESTONES} steps in [1, {limit}], "
                              f"got {brief(list(milestones))}")
        for section in SECTIONS:
            getattr(self, section).validate()
        if self.model.needs_pav and self.input.modality != "skeleton":
            raise ConfigError(f"model.name {self.model.name!r} needs skeleton input (PAV comes from poses); "
                              f"input.representation is {self.input.representation!r}")
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ExperimentConfig":
        """Build from a nested mapping ({"input": {"sigma": 4}}) or dotted keys ({"input.sigma": 4})."""
        nested: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            if "." in key:
                section, _, name = key.partition(".")
                nested.setdefault(section, {})[name] = value
            elif isinstance(value, Mapping):
                nested.setdefault(key, {}).update(value)
            else:
                raise ConfigError(f"unknown top-level key {key!r}; sections are {', '.join(SECTIONS)}")
        unknown = sorted(set(nested) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown config section(s) {unknown}; sections are {', '.join(SECTIONS)}")
        return cls(**{s: build_strict(SECTIONS[s], v, s) for s, v in nested.items()}).validate()

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_flat(self) -> dict[str, Any]:
        """Dotted keys -> values, as Tune param spaces and MLflow params use them."""
        return {f"{s}.{k}": v for s, section in self.to_dict().items() for k, v in section.items()}

    def for_trial(self) -> "ExperimentConfig":
        """The config a Tune trial may hold: no partition file (it lists the test ids); the trial's train/val
        split arrives as a `TrainValSplit` instead."""
        return self.replace(**{"data.partition": ""})

    def replace(self, **dotted: Any) -> "ExperimentConfig":
        """A copy with dotted-key overrides, e.g. cfg.replace(**{"input.sigma": 4.0})."""
        flat = self.to_flat()
        for key in dotted:
            if key not in flat:
                raise ConfigError(f"unknown config key {key!r}")
        flat.update(dotted)
        return ExperimentConfig.from_dict(flat)


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`--set key=value` flags -> {dotted key: YAML-parsed value}; a malformed flag is a ConfigError."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = load_yaml_text(value, f"--set {cut(key.strip(), 60)}")
    return overrides


def load_config(path: str | Path) -> ExperimentConfig:
    """Read a YAML config file; errors name the file."""
    path = Path(path)
    values = load_yaml_file(path) or {}  # bounded: size, depth, no aliases; errors name the file
    try:
        return ExperimentConfig.from_dict(values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
