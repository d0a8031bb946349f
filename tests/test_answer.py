"""The answer as a set with evidence (scolio_core/evaluation/answer.py) on cases with a known answer: the
per-sequence loss, the model confidence set, the knob effects and how they read; the audit's line from the tags.
The whole path on a real sweep is in tests/test_sweep_e2e.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import recall_score

from scolio_core import names
from scolio_core.evaluation.answer import (
    ModelEvidence,
    answer_from_evidence,
    answer_lines,
    answer_markdown,
    confidence_set_pvalues,
    effect_line,
    sequence_loss,
)
from scolio_core.tracking.answer_view import answer_audit, answer_audit_lines

LABELS = np.repeat([0, 1, 2], [36, 18, 18])  # the demo's val set: 72 sequences, 36/18/18


def predictions(accuracy: float, seed: int) -> np.ndarray:
    """Right on a random `accuracy` share of the sequences, else the next class."""
    wrong = np.random.default_rng(seed).random(LABELS.size) >= accuracy
    return np.where(wrong, (LABELS + 1) % 3, LABELS)


def model(name: str, values: dict, predicted: np.ndarray, seed: int | None = None) -> ModelEvidence:
    return ModelEvidence(name, json.dumps(values, sort_keys=True), values, predicted, seed=seed)


def test_the_loss_averages_to_one_minus_macro_recall():
    for seed in range(5):
        predicted = predictions(0.7, seed)
        assert sequence_loss(LABELS, predicted).mean() == pytest.approx(
            1 - recall_score(LABELS, predicted, average="macro"))
    assert sequence_loss(LABELS, LABELS).sum() == 0


def test_identical_configurations_are_one_set_holding_them_all():
    same = predictions(0.7, 0)
    models = [model(f"t{i}", {"input.sigma": float(i)}, same) for i in range(4)]
    answer = answer_from_evidence(LABELS, models, ["input.sigma"], selected={"input.sigma": 2.0})
    assert len(answer.best_set) == 4 and all(c.p_value == 1.0 for c in answer.configurations)
    assert answer.selected_in_set is True
    effect = answer.effects[0]  # identical predictions: the effect is exactly none, its interval a point
    assert effect["macro_recall"] == {"effect": 0.0, "low": 0.0, "high": 0.0}
    assert effect["verdict"] == "indistinguishable at this val size"


def test_a_clearly_worse_configuration_is_excluded_and_close_ones_stay():
    models = [model("good", {"input.representation": "body-only"}, predictions(0.85, 1)),
              model("close", {"input.representation": "full-body"}, predictions(0.82, 2)),
              model("bad", {"input.representation": "silhouette"}, predictions(0.35, 3))]
    answer = answer_from_evidence(LABELS, models, ["input.representation"],
                                  selected={"input.representation": "full-body"})
    rows = {c.models[0].trial: c for c in answer.configurations}
    assert rows["good"].in_set and rows["close"].in_set and not rows["bad"].in_set
    assert rows["bad"].p_value <= 0.10 < rows["close"].p_value
    assert answer.selected_in_set is True and answer.configurations[-1].models[0].trial == "bad"


def test_the_set_is_the_same_for_the_same_seed():
    losses = np.stack([sequence_loss(LABELS, predictions(a, s)) for s, a in enumerate((0.8, 0.75, 0.7, 0.5))], 1)
    first, again = confidence_set_pvalues(losses, seed=3), confidence_set_pvalues(losses, seed=3)
    assert np.array_equal(first, again) and first.max() == 1.0
    assert not np.array_equal(first, confidence_set_pvalues(losses, seed=4))  # the seed is what fixes it


def test_one_or_two_configurations_and_uneven_seed_counts():
    one = answer_from_evidence(LABELS, [model("a", {"k": 1}, predictions(0.5, 0))], ["k"])
    assert one.best_set == ['{"k": 1}'] and one.configurations[0].p_value == 1.0 and not one.effects
    two = answer_from_evidence(LABELS, [model("a", {"k": "x"}, predictions(0.9, 0)),
                                        model("b", {"k": "y"}, predictions(0.3, 1))], ["k"])
    assert two.best_set == ['{"k": "x"}']
    # Three seeds of one configuration, one of another: a configuration's loss is the mean over its seeds.
    seeds = [predictions(0.8, s) for s in (10, 11, 12)]
    models = [model(f"c{s}", {"k": "x"}, p, seed=s) for s, p in enumerate(seeds)]
    answer = answer_from_evidence(LABELS, [*models, model("d", {"k": "y"}, predictions(0.8, 13))], ["k", "train.seed"])
    grouped = next(c for c in answer.configurations if c.values == {"k": "x"})
    assert len(grouped.models) == 3
    assert grouped.loss == pytest.approx(np.mean([sequence_loss(LABELS, p) for p in seeds], axis=0))
    assert grouped.scores["macro_recall"] == pytest.approx(np.mean([recall_score(LABELS, p, average="macro")
                                                                    for p in seeds]))
    assert [e["knob"] for e in answer.effects] == ["k"]  # train.seed is a replicate, never a knob


def _wrong_on(indices: list[int]) -> np.ndarray:
    predicted = LABELS.copy()
    predicted[indices] = (LABELS[indices] + 1) % 3
    return predicted


def test_a_knob_with_a_known_effect_and_one_with_none():
    negatives, neutrals, positives = range(0, 36), range(36, 54), range(54, 72)
    # plain vs weighted: the same error count per class, on different sequences -> exactly no effect.
    # body-only vs silhouette: silhouettes miss 12 more sequences of each class -> a clear effect.
    base = [*negatives[:4], *neutrals[:2], *positives[:2]]
    shifted = [*negatives[4:8], *neutrals[2:4], *positives[2:4]]
    extra = [*negatives[10:22], *neutrals[6:18], *positives[6:18]]
    models = [model("a", {"repr": "body-only", "loss": "plain"}, _wrong_on(base)),
              model("b", {"repr": "body-only", "loss": "weighted"}, _wrong_on(shifted)),
              model("c", {"repr": "silhouette", "loss": "plain"}, _wrong_on(base + extra)),
              model("d", {"repr": "silhouette", "loss": "weighted"}, _wrong_on(shifted + extra))]
    answer = answer_from_evidence(LABELS, models, ["repr", "loss"], selected={"repr": "body-only", "loss": "plain"})
    effects = {e["knob"]: e for e in answer.effects}
    known = effects["repr"]
    assert (known["first"], known["second"]) == ("body-only", "silhouette")
    expected = (12 / 36 + 12 / 18 + 12 / 18) / 3  # the macro-recall silhouettes lose
    assert known["macro_recall"]["effect"] == pytest.approx(expected)
    assert 0 < known["macro_recall"]["low"] < expected < known["macro_recall"]["high"]
    assert known["verdict"] == "body-only better"
    none = effects["loss"]
    assert none["macro_recall"]["effect"] == pytest.approx(0.0)
    assert none["macro_recall"]["low"] < 0 < none["macro_recall"]["high"]
    assert none["verdict"] == "indistinguishable at this val size"
    line = effect_line(known)
    assert line.startswith(f"repr body-only vs silhouette: +{expected:.2f} [+") and "val macro-recall" in line


def test_a_numeric_knob_compares_its_halves_and_a_conditional_one_skips_configurations_without_it():
    models = [model(f"s{s}", {"sigma": s, "repr": "body-only"}, predictions(0.5 + 0.1 * s, int(s))) for s in (1.0, 2.0, 3.0, 4.0)]
    models.append(model("sil", {"repr": "silhouette"}, predictions(0.2, 9)))
    answer = answer_from_evidence(LABELS, models, ["repr", "sigma"], selected={"sigma": 4.0, "repr": "body-only"})
    sigma = next(e for e in answer.effects if e["knob"] == "sigma")
    assert (sigma["first"], sigma["second"], sigma["n_first"], sigma["n_second"]) == ("high (3 to 4)", "low (1 to 2)", 2, 2)
    assert sigma["macro_recall"]["effect"] > 0 and sigma["verdict"] == "higher sigma better"
    odd = answer_from_evidence(LABELS, models[:3], ["sigma"])  # the median configuration is left out
    assert (odd.effects[0]["n_first"], odd.effects[0]["n_second"]) == (1, 1)


def test_the_answer_reads_the_same_printed_recorded_and_in_the_report():
    models = [model("a", {"k": "x"}, predictions(0.8, 0)), model("b", {"k": "y"}, predictions(0.3, 1))]
    answer = answer_from_evidence(LABELS, models, ["k"], selected={"k": "x"}, notes=["a note"])
    data = answer.to_dict(LABELS, [f"{i:05d}" for i in range(72)])
    assert json.loads(json.dumps(data)) == data  # plain JSON
    assert len(data["evidence"]["models"]) == 2 and data["evidence"]["labels"] == LABELS.tolist()
    printed = answer.summary_lines()
    assert printed == answer_lines(data)
    assert printed[0].startswith("  the answer on val (72 sequences: 36 negative / 18 neutral / 18 positive; 2 models")
    assert any(line.endswith("<- selected") for line in printed) and printed[-1] == "    note: a note"
    assert any(line.startswith("      k x vs y: +") for line in printed)
    section = answer_markdown(data)
    assert "## The answer: the best set and each knob's effect" in section
    assert any(line.startswith("| yes **selected** |") for line in section)


def test_the_audit_says_the_best_set_and_whether_the_selected_configuration_is_in_it():
    record = SimpleNamespace(tags={names.TAG_ANSWER_BEST_SET: json.dumps(["body-only σ2.6", "full-body σ1.2"]),
                                   names.TAG_ANSWER_CONFIGURATIONS: "7", names.TAG_ANSWER_SELECTED_IN_SET: "false"})
    info = answer_audit(record)
    (line,) = answer_audit_lines(info)
    assert '2 of 7 configurations, ["body-only σ2.6", "full-body σ1.2"]' in line
    assert line.endswith("the selected configuration is NOT in it")
    assert answer_audit(SimpleNamespace(tags={})) is None and answer_audit_lines(None) == []


def test_configurations_whose_labels_round_alike_stay_apart():
    models = [ModelEvidence("t1", "body-only σ2.6", {"input.sigma": 2.61}, predictions(0.8, 0)),
              ModelEvidence("t2", "body-only σ2.6", {"input.sigma": 2.64}, predictions(0.3, 1))]
    answer = answer_from_evidence(LABELS, models, ["input.sigma"], selected={"input.sigma": 2.64})
    assert answer.best_set == ["body-only σ2.6 [t1]"]
    assert answer.selected == "body-only σ2.6 [t2]" and answer.selected_in_set is False
    assert "(the selected configuration body-only σ2.6 [t2] is NOT in the set)" in "\n".join(answer.summary_lines())
