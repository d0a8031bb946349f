"""scolio_core.names: the one owner of every MLflow name, at the bottom layer; the selectable metrics are the
scores the training loop reports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from scolio_core import names
from scolio_core.errors import ConfigError


def test_names_import_only_the_standard_library_and_the_bottom_layer():
    tree = ast.parse(Path(names.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    project = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names}
    assert project <= {"scolio_core", "scolio_core.errors"}, project


def test_selectable_metrics_are_the_val_scores_the_loop_reports():
    from scolio_core.training.metrics import classification_metrics, flatten_metrics

    reported = flatten_metrics(classification_metrics([0, 1, 2, 2], [0, 2, 2, 1]), names.SPLIT_VAL)
    assert names.SELECTABLE_METRICS <= reported.keys()
    counts = {k for k in reported if k == "val/n" or k.startswith(f"val/{names.CONFUSION}/")}
    assert reported.keys() - counts == names.SELECTABLE_METRICS
    assert names.DEFAULT_METRIC == names.METRIC_VAL_MACRO_F1 == "val/macro_f1"


@pytest.mark.parametrize("name", ["val/macro_f1", "val/accuracy", "val/sensitivity/positive"])
def test_check_metric_name_accepts_val_scores(name):
    assert names.check_metric_name(name) == name


@pytest.mark.parametrize("name", ["test/macro_f1", "train/loss", "val/n", "val/macro-f1", "macro_f1"])
def test_check_metric_name_refuses_anything_else_in_one_line(name):
    with pytest.raises(ConfigError, match="cannot select a model") as refused:
        names.check_metric_name(name)
    assert "\n" not in str(refused.value) and "val/macro_f1" in str(refused.value)


def test_helpers_spell_what_the_writers_write():
    from scolio_core.training.metrics import flatten_metrics

    flat = flatten_metrics({"macro_f1": (0.1, 0.9), "confusion_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]},
                           names.SPLIT_TEST)
    assert set(names.ci_metrics(names.METRIC_TEST_MACRO_F1)) <= flat.keys()
    assert names.confusion_metric(names.SPLIT_TEST, "negative", "neutral") in flat
    assert names.lockbox_entry_tag(2, "opened") == "scolio.lockbox.entry.2.opened"
    assert names.confirmed_metric(names.METRIC_VAL_MACRO_F1, "optimism") == "confirm/val/macro_f1/optimism"
