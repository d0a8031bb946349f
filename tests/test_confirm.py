"""Confirmation before selection, piece by piece (the whole path runs in tests/test_sweep_e2e.py): the fixed-list
searcher, the choice among candidates, the profile section, and the audit that re-checks a confirmed selection
from the runs themselves."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from scolio_core import names
from scolio_core.errors import ConfigError
from scolio_core.tracking.audit import confirmation_problems
from scolio_core.tracking.record import SweepRecord, Trial
from scolio_sweep.settings.profile import PROFILE_DIR, apply_overrides, load_profile
from scolio_sweep.stages.confirm import ConfirmationRecord, ConfirmedCandidate, choose


def candidate(rank: int, search_val: float, *vals: float) -> ConfirmedCandidate:
    return ConfirmedCandidate(rank=rank, search_trial=f"t{rank}", label=f"config {rank}", search_val=search_val,
                              seed_vals={seed: v for seed, v in enumerate(vals, start=1)},
                              seed_trials={seed: f"c{rank}{seed}" for seed in range(1, len(vals) + 1)})


def test_fixed_configurations_suggests_each_once_in_order_then_finishes_and_survives_a_restore(tmp_path):
    from ray.tune.search import Searcher

    from scolio_sweep.search.searchers import FixedConfigurations

    configs = [{"input.sigma": 2.0, "train.seed": 1}, {"input.sigma": 2.0, "train.seed": 2},
               {"input.representation": "silhouette", "train.seed": 1}]
    searcher = FixedConfigurations(configs, metric="val/macro_f1", mode="max")
    assert searcher.suggest("a") == configs[0] and searcher.suggest("b") == configs[1]
    assert searcher.suggest("a") == configs[0]  # asked again for the same trial: the same configuration
    searcher.save(str(tmp_path / "state.json"))
    restored = FixedConfigurations([], metric="val/macro_f1", mode="max")
    restored.restore(str(tmp_path / "state.json"))
    assert restored.suggest("c") == configs[2]  # a restored run does not suggest a configuration twice
    assert restored.suggest("d") == Searcher.FINISHED
    assert "input.sigma" not in restored.suggest("c")  # a conditional key the search left out stays out


def test_the_best_confirmed_mean_is_chosen_and_a_tie_goes_to_the_better_search_rank():
    top, runner_up = candidate(1, 0.80, 0.60, 0.62), candidate(2, 0.78, 0.70, 0.66)
    third = candidate(3, 0.7, 0.67, 0.67)
    assert choose([top, runner_up, third], "max") == 1  # the search's winner was lucky on val
    assert choose([top, candidate(2, 0.78, 0.62, 0.60)], "max") == 0  # same mean: the better search rank
    assert choose([top, runner_up], "min") == 0
    mean, low, high = runner_up.mean_ci
    assert mean == pytest.approx(0.68) and low < mean < high
    assert top.optimism == pytest.approx(0.80 - 0.61)
    record = ConfirmationRecord(metric="val/macro_f1", mode="max", seeds=[1, 2], candidates=[top, runner_up],
                                chosen=1, tested_trial="c21")
    data = json.loads(record.to_json())
    assert data["chosen"] == "t2" and data["tested_trial"] == "c21" and data["seeds"] == [1, 2]
    assert [row["seed_vals"] for row in data["candidates"]] == [{"1": 0.60, "2": 0.62}, {"1": 0.70, "2": 0.66}]
    printed = record.summary_lines()  # what the sweep prints: search val beside the confirmed mean, on val ids
    assert printed[2].startswith("    #2 config 2: search val/macro_f1 0.7800 -> confirmed mean 0.6800 [95 % CI")
    assert printed[2].endswith("optimism +0.1000   <- selected") and "<- selected" not in printed[1]
    single = candidate(1, 0.8, 0.7)
    assert single.mean_ci[0] == 0.7 and json.loads(ConfirmationRecord(
        "val/macro_f1", "max", [1], [single], 0, "c11").to_json())["candidates"][0]["ci_low"] is None


def test_the_confirm_section_is_checked_like_every_other(tmp_path):
    smoke = load_profile("smoke")
    assert smoke.confirm.candidates == 2 and smoke.confirm.seeds == 2
    assert load_profile("paper").confirm.enabled and load_profile("demo").confirm.enabled
    assert not load_profile("finetune_smoke").confirm.enabled  # off unless a profile asks
    assert not apply_overrides(smoke, confirm_candidates=0).confirm.enabled
    with pytest.raises(ConfigError, match="--confirm.seeds must be >= 1"):
        apply_overrides(smoke, confirm_seeds=0)
    base = (PROFILE_DIR / "smoke.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(base.replace("confirm: {candidates: 2, seeds: 2}", "confirm: {candidates: 2, repeats: 2}"))
    with pytest.raises(ConfigError, match=r"bad.yaml: confirm.repeats: unknown key"):
        load_profile(str(bad))
    seeded = tmp_path / "seeded.yaml"
    seeded.write_text(base.replace("search:\n", "search:\n  train.seed: {int: [0, 3]}\n", 1))
    with pytest.raises(ConfigError, match="searches train.seed"):
        load_profile(str(seeded))


# ------------------------------------------------------------------------------------------------ the audit
def run(run_id: str, tags: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, status="FINISHED", run_name=run_id),
                           data=SimpleNamespace(tags=tags or {}))


def trial(run_id: str, vals: list[float], params: dict, tags: dict | None = None) -> Trial:
    return Trial(run(run_id, {names.TAG_TRIAL_ID: run_id, **(tags or {})}), params,
                 {names.METRIC_VAL_MACRO_F1: dict(enumerate(vals, start=1))})


def sweep_record(selected: str, chosen: str = "s1", extra_trial: float = 0.5) -> tuple[SweepRecord, dict]:
    search = [trial("s1", [0.5, 0.8], {"input.sigma": 1.0}), trial("s2", [0.7, 0.75], {"input.sigma": 2.0}),
              trial("s3", [0.4, extra_trial], {"input.sigma": 3.0})]
    confirms = [trial(f"c{c}{seed}", [v], {"input.sigma": float(c), "train.seed": seed},
                      {names.TAG_ROLE: names.ROLE_CONFIRMATION, names.TAG_CONFIRM_CANDIDATE: f"s{c}"})
                for c, seed, v in ((1, 1, 0.6), (1, 2, 0.62), (2, 1, 0.72), (2, 2, 0.7))]
    confirmation = {"seeds": [1, 2], "chosen": chosen,
                    "candidates": [{"search_trial": "s1"}, {"search_trial": "s2"}]}
    parent = run("p", {names.TAG_SELECTED_RUN_ID: selected, names.TAG_CONFIRMATION: json.dumps(confirmation)})
    record = SweepRecord("x", "0", parent, search, ["input.sigma"], [], confirms)
    return record, confirmation


def test_the_audit_recomputes_a_confirmed_selection_from_the_runs():
    record, confirmation = sweep_record("c21", chosen="s2")
    assert confirmation_problems(record, confirmation) == []
    wrong_choice = confirmation_problems(*sweep_record("c11", chosen="s1"))
    assert any("candidate s2 has the best mean" in p for p in wrong_choice)
    not_the_rule = confirmation_problems(*sweep_record("c22", chosen="s2"))
    assert any("first confirmation seed" in p for p in not_the_rule)
    skipped = confirmation_problems(*sweep_record("c21", chosen="s2", extra_trial=0.9))
    assert any("search trial s3" in p and "was not confirmed" in p for p in skipped)
