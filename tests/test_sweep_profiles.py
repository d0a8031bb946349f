"""Sweep profiles are strict data; the conditional space and the DRF pairing behave as documented."""

from __future__ import annotations

import optuna
import pytest

from scolio_core.errors import ConfigError
from sweeps.drf import paired_difference
from sweeps.profiles import define_search_space, load_profile

PROFILES = ["smoke", "demo", "paper", "finetune_smoke", "finetune_demo", "drf_smoke", "drf_demo"]


@pytest.mark.parametrize("name", PROFILES)
def test_every_shipped_profile_loads(name):
    profile = load_profile(name)
    assert profile.metric == "val/macro_f1" and profile.evaluations_per_trial >= 1


def test_unknown_profile_and_keys_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="known: "):
        load_profile("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmetric: val/macro_f1\nmode: max\nfixed: {}\nsearch: {input.sigmaa: {uniform: [1, 2]}}\n")
    with pytest.raises(ConfigError, match="input.sigmaa"):
        load_profile(str(bad))


def test_silhouette_trials_get_no_skeleton_knobs():
    space = define_search_space(load_profile("demo"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {"silhouette": set(), "skeleton": set()}
    for _ in range(40):
        trial = study.ask()
        space(trial)
        kind = "silhouette" if trial.params["input.representation"] == "silhouette" else "skeleton"
        seen[kind] |= set(trial.params)
        study.tell(trial, 0.0)
    assert "input.sigma" in seen["skeleton"] and "input.joint_weight" in seen["skeleton"]
    assert seen["silhouette"] and not {"input.sigma", "input.joint_weight"} & seen["silhouette"]
    assert "train.lr" in seen["silhouette"]


def test_paired_difference_pairs_by_seed():
    rows = [{"train.seed": s, "model.use_pga": pga, "val/macro_f1": v}
            for s, pga, v in [(0, True, 0.7), (0, False, 0.6), (1, True, 0.5), (1, False, 0.55), (2, True, 0.9)]]
    diff = paired_difference(rows, "val/macro_f1", n_resamples=2000)
    assert diff["n"] == 2  # seed 2 ran only one arm: not paired
    assert diff["per_seed"] == pytest.approx({0: 0.1, 1: -0.05})
    assert diff["mean"] == pytest.approx(0.025) and diff["drf_wins"] == 1
    assert diff["ci_low"] <= diff["mean"] <= diff["ci_high"]
    with pytest.raises(ConfigError):
        paired_difference(rows[-1:], "val/macro_f1")
