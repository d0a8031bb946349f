"""Racing the confirmation's candidates (scolio_sweep/search/racing.py) on cases with known answers, and the
confirmation's choice and record once a race dropped someone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scolio_sweep.search.racing import leader, race_round, worse_p_value
from scolio_sweep.stages.confirm import ConfirmationRecord, ConfirmedCandidate, choose

T = 72


def losses(wrong: int, offset: int = 0) -> np.ndarray:
    """A per-sequence loss with `wrong` errors starting at sequence `offset`."""
    loss = np.zeros(T)
    loss[offset: offset + wrong] = 1.0 / 36
    return loss


def test_identical_candidates_are_never_dropped():
    same = losses(10)
    assert worse_p_value(same, same) == 1.0
    alive = race_round(["a", "b", "c"], {"a": [0.7], "b": [0.7], "c": [0.7]}, {"a": same, "b": same, "c": same},
                       alpha=0.5, mode="max")
    assert alive == ["a", "b", "c"]


def test_a_clearly_worse_candidate_is_dropped_and_a_close_one_kept():
    best, close, bad = losses(10), losses(11), losses(40)
    assert worse_p_value(bad, best) < 0.001
    assert worse_p_value(best, bad) > 0.99  # one-sided: better than the leader is no reason to drop
    alive = race_round(["close", "best", "bad"], {"best": [0.80], "close": [0.78], "bad": [0.40]},
                       {"best": best, "close": close, "bad": bad}, alpha=0.1, mode="max")
    assert alive == ["close", "best"]  # the search-rank order is kept


def test_the_leader_is_the_best_mean_and_a_tie_goes_to_the_earlier_rank():
    assert leader(["a", "b"], {"a": [0.6, 0.8], "b": [0.7, 0.71]}, "max") == "b"
    assert leader(["a", "b"], {"a": [0.7, 0.7], "b": [0.8, 0.6]}, "max") == "a"
    assert leader(["a", "b"], {"a": [0.2], "b": [0.1]}, "min") == "b"
    # the leader survives even when every other candidate is identical to it
    assert race_round(["x"], {"x": [0.5]}, {"x": losses(3)}, alpha=0.9, mode="max") == ["x"]


def test_unequal_loss_shapes_are_refused():
    with pytest.raises(ValueError, match="equal 1-d shapes"):
        worse_p_value(np.zeros(5), np.zeros(6))


def test_a_dropped_candidate_is_never_chosen_and_the_record_says_when_it_left():
    raced = ConfirmedCandidate(rank=1, search_trial="t1", label="config 1", search_val=0.9, seed_vals={1: 0.95},
                               seed_trials={1: "c11"}, dropped_after=1)
    kept = ConfirmedCandidate(rank=2, search_trial="t2", label="config 2", search_val=0.8,
                              seed_vals={1: 0.70, 2: 0.72}, seed_trials={1: "c21", 2: "c22"})
    assert choose([raced, kept], "max") == 1  # its one seed scored higher, but the race dropped it
    record = ConfirmationRecord(metric="val/macro_f1", mode="max", seeds=[1, 2], candidates=[raced, kept], chosen=1,
                                tested_trial="c21", rule="racing", alpha=0.1, tested="ensemble")
    data = json.loads(record.to_json())
    assert data["rule"] == "racing" and data["tested"] == "ensemble"
    assert [row["dropped_after"] for row in data["candidates"]] == [1, None]
    printed = "\n".join(record.summary_lines())
    assert "dropped after round 1" in printed and "seed ensemble" in printed and "seeds [1, 2]" in printed


@pytest.mark.parametrize("section, message", [
    ("{candidates: 3, seeds: 2, rule: racing, alpha: 0}", "alpha must be strictly between 0 and 1"),
    ("{candidates: 3, seeds: 2, rule: racing, alpha: 1}", "alpha must be strictly between 0 and 1"),
    ("{candidates: 1, seeds: 2, rule: racing}", "racing needs at least 2 candidates and 2 seeds"),
    ("{candidates: 3, seeds: 1, rule: racing}", "racing needs at least 2 candidates and 2 seeds"),
    ("{candidates: 2, seeds: 33, tested: ensemble}", "at most 32 members"),
    ("{candidates: 2, seeds: 2, rule: Racing}", "rule must be one of fixed, racing"),
    ("{candidates: 2, seeds: 2, tested: all}", "tested must be one of ensemble, first-seed"),
])
def test_racing_and_ensemble_settings_are_refused_before_compute(tmp_path, section, message):
    from scolio_core.errors import ConfigError
    from scolio_sweep.settings.profile import PROFILE_DIR, load_profile

    bad = tmp_path / "bad.yaml"
    bad.write_text((PROFILE_DIR / "smoke.yaml").read_text().replace("confirm: {candidates: 2, seeds: 2}",
                                                                     f"confirm: {section}"))
    with pytest.raises(ConfigError, match=message):
        load_profile(str(bad))
    # the same settings but sound load, and 33 seeds are fine when one model is tested
    assert load_profile("smoke").confirm.enabled
    if "33" in section:
        bad.write_text(bad.read_text().replace("tested: ensemble", "tested: first-seed"))
        assert load_profile(str(bad)).confirm.seeds == 33
