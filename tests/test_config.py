"""ExperimentConfig: strict construction, dotted keys, validation naming the field."""

import pytest

from scolio_core.config import ExperimentConfig, load_config
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
