"""What an adversarial review of the second hardening pass still got through, each refused now: sizes that
decide memory (a checkpoint contract or profile asking for model.width 1e6), an empty TEST_SET, a results dir
that is a file, duplicate YAML keys, a key both fixed and searched, a choice that repeats a value, a --set that
moves the last lr decay past a rung, a symlinked checkpoints folder, and the derived names of a study's stages.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scolio_core.config import ExperimentConfig
from scolio_core.errors import ConfigError, ContractError, WorkdirError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("key, value", [("model.width", 1_000_000), ("input.canvas_size", 100_000),
                                        ("train.frames", 1 << 20), ("train.batch_ids", 1 << 20),
                                        ("train.milestones", list(range(1, 19_001)))])
def test_sizes_that_decide_memory_are_bounded_in_the_config(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        ExperimentConfig.from_dict({key: value})
    assert "\n" not in str(info.value) and len(str(info.value)) < 300
    ExperimentConfig.from_dict({"model.width": 64, "input.canvas_size": 128})  # the published recipe passes


def test_a_contract_asking_for_a_huge_model_is_refused_naming_the_file(tmp_path):
    from scolio_core.training.checkpoint import CONTRACT, HASHES, read_checkpoint, sha256_file, write_checkpoint

    directory = write_checkpoint(tmp_path / "ck", config=ExperimentConfig.from_dict({"model.width": 4}),
                                 model_state={"w": torch.zeros(2)}, split=None, pav_stats=None, iteration=1)
    contract = json.loads((directory / CONTRACT).read_text())
    contract["config"]["model"]["width"] = 1_000_000  # an attacker rewrites hashes.json too: hashes are no signature
    (directory / CONTRACT).write_text(json.dumps(contract))
    hashes = json.loads((directory / HASHES).read_text())
    hashes[CONTRACT] = sha256_file(directory / CONTRACT)
    (directory / HASHES).write_text(json.dumps(hashes))
    start = time.perf_counter()
    with pytest.raises(ContractError) as info:
        read_checkpoint(directory)
    message = str(info.value)
    assert "contract.json" in message and "model.width" in message and "\n" not in message
    assert time.perf_counter() - start < 10


def test_yaml_refuses_a_key_given_twice():
    from scolio_core.safe_yaml import load_yaml_text

    with pytest.raises(ConfigError, match="line 2: key 'seed' given twice"):
        load_yaml_text("seed: 0\nseed: 1\n", "p.yaml")
    with pytest.raises(ConfigError, match="key 'search' given twice"):
        load_yaml_text("search: {a: 1}\nfixed: {}\nsearch: {b: 2}\n", "p.yaml")
    assert load_yaml_text("a: {x: 1}\nb: {x: 1}\n", "p.yaml") == {"a": {"x": 1}, "b": {"x": 1}}


def _profile(tmp_path: Path, old: str, new: str) -> Path:
    text = (ROOT / "sweeps" / "smoke.yaml").read_text()
    assert old in text, "sweeps/smoke.yaml changed: update this test's edit"
    path = tmp_path / "p.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_a_profile_key_both_fixed_and_searched_or_a_repeated_choice_is_refused(tmp_path):
    from scolio_sweep.settings.profile import load_profile

    both = _profile(tmp_path, "  model.width: 8\n", "  model.width: 8\n  input.sigma: 3.0\n")
    with pytest.raises(ConfigError, match="input.sigma is both fixed and searched"):
        load_profile(str(both))
    twice = _profile(tmp_path, "{choice: [plain, weighted]}", "{choice: [plain, plain]}")
    with pytest.raises(ConfigError, match=r"choice lists a value twice"):
        load_profile(str(twice))


def test_a_set_flag_gets_the_rung_check_the_yaml_gets():
    from scolio_sweep.settings.profile import apply_overrides, load_profile

    profile = load_profile("smoke")
    with pytest.raises(ConfigError, match="comes before the last learning-rate decay"):
        apply_overrides(profile, fixed={"train.milestones": [20]})
    assert apply_overrides(profile, fixed={"train.milestones": [12]}).fixed["train.milestones"] == [12]
    drf = load_profile("drf_smoke")  # no asha section: no scheduler, so no rung check either way
    assert apply_overrides(drf, fixed={"train.milestones": [8]})


def test_a_results_dir_that_is_a_file_is_refused_before_compute(tmp_path):
    from scolio_sweep.engine.storage import check_replaceable

    (tmp_path / "resfile").write_text("user data\n")
    with pytest.raises(WorkdirError, match="is not a folder"):
        check_replaceable(tmp_path / "resfile" / "sweep", "this sweep's results")
    assert (tmp_path / "resfile").read_text() == "user data\n"
    check_replaceable(tmp_path / "absent" / "sweep", "this sweep's results")  # a folder still to make is fine


def test_a_symlinked_checkpoints_folder_is_refused_before_training(tmp_path):
    from scolio_core.cli.train import check_workdir

    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine\n")
    workdir = tmp_path / "wd"
    workdir.mkdir()
    (workdir / "checkpoints").symlink_to(user, target_is_directory=True)
    with pytest.raises(WorkdirError, match="a link or a file"):
        check_workdir(workdir)
    assert (user / "notes.txt").read_text() == "mine\n" and sorted(p.name for p in user.iterdir()) == ["notes.txt"]


def test_a_stage_name_derived_from_a_long_sweep_name_can_be_named_again():
    from scolio_sweep.settings.run_settings import MAX_DERIVED_NAME_LENGTH, MAX_NAME_LENGTH, check_name

    stage = "a" * MAX_NAME_LENGTH + "-finetune"
    with pytest.raises(ConfigError):
        check_name(stage, "--name")
    assert check_name(stage, "--from-sweep", max_length=MAX_DERIVED_NAME_LENGTH) == stage


def test_a_sweep_with_an_empty_test_set_is_refused_before_ray(synth_root, tmp_path):
    partition = json.loads((synth_root / "Scoliosis1K_112.json").read_text())
    partition["TEST_SET"] = []
    (tmp_path / "empty_test.json").write_text(json.dumps(partition))
    args = ["--profile", "smoke", "--name", "empty-test", "--data-root", str(synth_root), "--partition",
            str(tmp_path / "empty_test.json"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--storage-path", str(tmp_path / "ray"), "--results-dir", str(tmp_path / "results")]
    probe = (f"import sys; sys.path.insert(0, {str(ROOT / 'sweeps')!r}); import representation; "
             "rc = representation.main(sys.argv[1:]); assert 'ray' not in sys.modules, 'ray was imported'; "
             "sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "TEST_SET is empty" in lines[0], done.stderr[-2000:]
    assert not (tmp_path / "ray").exists() and not (tmp_path / "results").exists()
