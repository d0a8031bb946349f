"""Sweep profiles are strict data; the conditional space and the DRF pairing behave as documented."""

from __future__ import annotations

import optuna
import pytest

from scolio_core.errors import ConfigError
from scolio_sweep.settings.profile import define_search_space, load_profile
from scolio_sweep.studies.drf import paired_difference

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


BASE = "name: x\nmetric: val/macro_f1\nmode: max\nfixed: {}\nsearch: {input.sigma: {uniform: [1, 2]}}\n"


@pytest.mark.parametrize("extra, named", [
    ("asha: {grace_perod: 2}\n", "asha.grace_perod"),
    ("budget: {num_samples: 4, max_concurent_trials: 2}\n", "budget.max_concurent_trials"),
    ("resources: {gpus_per_trail: 1}\n", "resources.gpus_per_trail"),
    ("synth: {num_sequence: 10}\n", "synth.num_sequence"),
    ("budget: {num_samples: four}\n", "budget.num_samples"),
    ("budget: {num_samples: 0}\n", "budget.num_samples"),
    ("asha: {reduction_factor: 1}\n", "asha.reduction_factor"),
    ("resources: {workers_per_trial: 1.5}\n", "resources.workers_per_trial"),
    ("monitoring: {system_metric: false}\n", "monitoring.system_metric"),
    ("monitoring: {system_metrics: maybe}\n", "monitoring.system_metrics"),
    ("monitoring: {sampling_interval_s: -2.0}\n", "monitoring.sampling_interval_s"),
    ("monitoring: {sampling_interval_s: 0.01}\n", "monitoring.sampling_interval_s"),
])
def test_every_section_refuses_unknown_keys_and_bad_values(tmp_path, extra, named):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE + extra)
    with pytest.raises(ConfigError) as caught:
        load_profile(str(bad))
    message = str(caught.value)
    assert str(bad) in message and named in message and "\n" not in message


@pytest.mark.parametrize("search, named", [
    ("{input.sigma: {uniformm: [1, 2]}}", "search.input.sigma"),
    ("{input.sigma: {uniform: [2, 1]}}", "search.input.sigma.uniform"),
    ("{train.lr: {loguniform: [0, 1]}}", "search.train.lr.loguniform"),
    ("{train.iterations: {int: [1.5, 3]}}", "search.train.iterations.int"),
    ("{input.sigma: {uniform: [-1, 2]}}", "search.input.sigma"),
])
def test_bad_distributions_name_their_key(tmp_path, search, named):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("search: {input.sigma: {uniform: [1, 2]}}", f"search: {search}"))
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_profile(str(bad))


def test_sections_are_typed_with_defaults_for_absent_keys():
    profile = load_profile("smoke")
    assert (profile.asha.grace_period, profile.asha.reduction_factor) == (3, 2)
    assert profile.budget.num_samples == 5 and profile.resources.workers_per_trial == 1
    assert profile.synth.cache_key == "synth-n60-t16-r112-s0"
    # The searched space records as the YAML wrote it (a resumed sweep compares these params exactly).
    assert profile.search_specs()["input.sigma"] == {"uniform": [1.0, 6.0]}


def test_early_stopping_rungs_before_the_last_lr_decay_are_refused(tmp_path):
    """Before the last decay a score does not predict the final rank (the AshaSchedule docstring's evidence):
    a profile that would stop trials there is refused in one line that says where the rung may go."""
    fixed = "fixed: {train.iterations: 240, train.eval_every: 24, train.milestones: [160, 200]}\n"
    early = tmp_path / "early.yaml"
    early.write_text(BASE.replace("fixed: {}\n", fixed) + "asha: {grace_period: 2, reduction_factor: 3}\n")
    with pytest.raises(ConfigError, match=r"early.yaml: asha: the rung at evaluation 2 \(step 48\) comes before the "
                                          r"last learning-rate decay \(step 200\).*grace_period to at least 9"):
        load_profile(str(early))
    late = tmp_path / "late.yaml"
    late.write_text(BASE.replace("fixed: {}\n", fixed) + "asha: {grace_period: 9, reduction_factor: 3}\n")
    assert load_profile(str(late)).asha.grace_period == 9
    off = tmp_path / "off.yaml"  # a grace period of the whole budget: no early stopping at all
    off.write_text(BASE.replace("fixed: {}\n", fixed) + "asha: {grace_period: 10, reduction_factor: 3}\n")
    assert load_profile(str(off))
    from scolio_sweep.search.rungs import rung_milestones
    from scolio_sweep.settings.profile import check_rungs_after_decay

    assert rung_milestones(10, 9, 3) == [9] and rung_milestones(10, 10, 3) == []
    # The sweeps check a profile without an asha section too (its default would stop at evaluation 1).
    with pytest.raises(ConfigError, match="before the last learning-rate decay"):
        check_rungs_after_decay(load_profile(str(early)).replace(asha=load_profile("smoke").asha.__class__()), "x")
    for shipped in ("smoke", "demo", "paper"):
        check_rungs_after_decay(load_profile(shipped), shipped)


def test_system_metrics_are_on_by_default_and_switch_off_in_the_profile(tmp_path):
    assert load_profile("smoke").monitoring.trial_interval_s() == 2.0
    absent = tmp_path / "absent.yaml"
    absent.write_text(BASE)
    assert load_profile(str(absent)).monitoring.trial_interval_s() == 2.0  # on unless a profile says otherwise
    off = tmp_path / "off.yaml"
    off.write_text(BASE + "monitoring: {system_metrics: false, sampling_interval_s: 5}\n")
    monitoring = load_profile(str(off)).monitoring
    assert monitoring.system_metrics is False and monitoring.trial_interval_s() is None  # trials sample nothing


def test_a_profile_typo_exits_2_with_one_line_before_ray_starts(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    shipped = (Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml").read_text()
    bad = tmp_path / "typo.yaml"
    bad.write_text(shipped.replace("asha: {grace_period: 3,", "asha: {grace_perod: 3,"))
    scripts = Path(__file__).resolve().parents[1] / "sweeps"
    probe = (f"import sys; sys.path.insert(0, {str(scripts)!r}); import representation; "
             "rc = representation.main(sys.argv[1:]); "
             "print('ray imported' if 'ray' in sys.modules else 'ray not imported'); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", probe, "--profile", str(bad), "--tracking-uri",
                           f"sqlite:///{tmp_path / 'mlflow.db'}", "--storage-path", str(tmp_path / "ray")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "asha.grace_perod" in lines[0], done.stderr
    assert done.stdout.strip() == "ray not imported"
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray").exists()
