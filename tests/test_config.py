"""ExperimentConfig: strict construction, dotted keys, validation naming the field."""

from dataclasses import dataclass

import pytest

from scolio_core.config import ExperimentConfig, build_strict, load_config
from scolio_core.errors import ConfigError


def test_round_trip_through_flat_and_nested_forms():
    config = ExperimentConfig().replace(**{"input.sigma": 4.5, "train.milestones": [5, 9]})
    assert ExperimentConfig.from_dict(config.to_flat()) == config
    assert ExperimentConfig.from_dict(config.to_dict()) == config
    assert config.train.milestones == (5, 9)


@pytest.mark.parametrize("values, field", [
    ({"input": {"sigmaa": 1.0}}, "input.sigmaa"),
    ({"inputs.sigma": 1.0}, "inputs"),
    ({"input.representation": "legs-only"}, "input.representation"),
    ({"input.sigma": -1.0}, "input.sigma"),
    ({"train.iterations": 2.5}, "train.iterations"),
    ({"train.amp": "yes"}, "train.amp"),
    ({"train.iterations": True}, "train.iterations"),  # a bool is never an int
    ({"train.iterations": 100.0}, "train.iterations"),
    ({"loss.margin": float("nan")}, "loss.margin"),
    ({"train.lr": "0.1"}, "train.lr"),
    ({"loss.class_weights": [1.0, 2.0]}, "loss.class_weights"),
    ({"train.milestones": [10, True]}, "train.milestones"),
    ({"model.name": "drf", "input.representation": "silhouette"}, "drf"),
])
def test_bad_values_raise_naming_the_field(values, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        ExperimentConfig.from_dict(values)


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: -0.1\n")
    with pytest.raises(ConfigError, match="bad.yaml.*train.lr"):
        load_config(path)


def test_derived_input_properties():
    skeleton = ExperimentConfig().input
    silhouette = ExperimentConfig().replace(**{"input.representation": "silhouette"}).input
    assert (skeleton.modality, skeleton.in_channels, skeleton.frame_shape) == ("skeleton", 2, (64, 44))
    assert (silhouette.modality, silhouette.in_channels) == ("silhouette", 1)


@dataclass(frozen=True)
class _Section:
    count: int = 1
    rate: float = 0.5
    flag: bool = False
    label: str = ""
    steps: tuple[int, ...] = ()
    limit: float | None = None


def test_build_strict_coerces_only_what_it_documents():
    built = build_strict(_Section, {"count": 3, "rate": 1, "flag": True, "steps": [1, 2], "limit": None}, "s")
    assert built == _Section(count=3, rate=1.0, flag=True, steps=(1, 2))
    assert isinstance(built.rate, float) and isinstance(built.steps, tuple)
    assert type(build_strict(_Section, {"rate": 1}, "s", int_as_float=False).rate) is int  # kept as written
    assert build_strict(_Section, None, "s") == _Section()  # an empty YAML section
    for raw, match in (({"count": True}, r"s\.count must be an integer"), ({"rate": float("inf")}, r"s\.rate"),
                       ({"flag": 1}, r"s\.flag must be true or false"), ({"label": None}, r"s\.label must not be null"),
                       ({"cuont": 1}, r"s\.cuont: unknown key \(known: count, rate"), ([1], "s must be a mapping")):
        with pytest.raises(ConfigError, match=match) as refused:
            build_strict(_Section, raw, "s")
        assert "\n" not in str(refused.value)
