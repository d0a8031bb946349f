"""Issue 27, sweep side: hostile or mistaken input is refused in one line, before Ray starts, cheaply.

Each finding runs the real entry script (`python sweeps/representation.py ...`) in a subprocess and checks:
exit code 2, one stderr line naming the file or field, peak RSS under 1 GB (os.wait4's ru_maxrss of that
child; an address-space limit stops a regression from eating the machine), under 10 s, Ray never started
(no Ray temp dir, no storage folder), and every file in the working folder byte-identical afterwards.
The many variants of a rule run in-process against the same functions the script calls.
"""

from __future__ import annotations

import os
import pickle
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_registry import _checkpoint, store  # noqa: F401  (the registry tests' store and tiny checkpoint)

from scolio_core import names
from scolio_core.errors import ConfigError, ContractError, WorkdirError
from scolio_core.safe_yaml import load_yaml_text
from scolio_sweep.engine.storage import OWNED_MARKER, check_replaceable, claim_folder
from scolio_sweep.settings.profile import apply_overrides, load_profile
from scolio_sweep.settings.run_settings import check_name, check_output_dirs

ROOT = Path(__file__).resolve().parents[1]
SMOKE = (ROOT / "sweeps" / "smoke.yaml").read_text()
MAX_RSS_BYTES = 1 << 30
MAX_WALL_S = 10.0
ADDRESS_LIMIT = 4 << 30  # a guard only: torch and cv2 map ~1.5 GB of address space just importing


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A flow sequence of nested aliases: a few hundred bytes that build 9**9 strings with plain safe_load."""
    parts = ["&l0 [" + ", ".join(["lol"] * width) + "]"]
    parts += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


def profile_with(tmp: Path, old: str, new: str, name: str = "p.yaml") -> Path:
    """smoke.yaml with one line replaced, written to `tmp`."""
    assert old in SMOKE, old
    path = tmp / name
    path.write_text(SMOKE.replace(old, new))
    return path


# ------------------------------------------------------------------------------------ the subprocess check
@dataclass
class Refusal:
    code: int
    stderr: str
    wall_s: float
    max_rss_bytes: int


@pytest.fixture
def work(tmp_path) -> Path:
    """The working folder the script runs in, holding a user's files that must survive byte-identical."""
    folder = tmp_path / "work"
    (folder / "victim" / "winner_checkpoint").mkdir(parents=True)
    (folder / "victim" / "winner_checkpoint" / "user_notes.txt").write_text("mine, not scoliotune's\n")
    (folder / "victim" / "summary.md").write_text("# my summary\n")
    (folder / "results" / "victim").mkdir(parents=True)
    (folder / "results" / "victim" / "summary.md").write_text("# my results\n")
    (folder / "keep.txt").write_bytes(os.urandom(64))
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_LIMIT, ADDRESS_LIMIT))


def run_script(work: Path, *args: str, script: str = "representation.py") -> Refusal:
    """Run sweeps/<script> in `work` with the isolated stores; its own exit code, stderr, wall time, peak RSS.
    With `script` "", `args` start with python's own (`-c CODE ...`) and the store flags come last."""
    io = work.parent
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = str(io / "raytmp")
    stores = ["--tracking-uri", f"sqlite:///{io / 'mlflow.db'}", "--storage-path", str(work / "ray"),
              "--results-dir", str(work / "results"), "--cache-dir", str(io / "cache")]
    command = ([sys.executable, str(ROOT / "sweeps" / script), *stores, *args] if script
               else [sys.executable, *args, *stores])
    with open(io / "stderr.txt", "w") as err:
        start = time.monotonic()
        process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                   preexec_fn=_limit_address_space)
        killer = threading.Timer(60, process.kill)  # a regression (a 45 s bomb) fails, it does not hang
        killer.start()
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not all children's
        killer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        wall = time.monotonic() - start
    return Refusal(process.returncode, (io / "stderr.txt").read_text(), wall, usage.ru_maxrss * 1024)


def assert_refused(refusal: Refusal, work: Path, before: dict[str, bytes], *named: str,
                   label: str = "representation sweep") -> None:
    line = refusal.stderr.strip()
    assert refusal.code == 2, refusal.stderr[-3000:]
    assert "\n" not in line and line.startswith(f"{label}: error: "), line[:3000]
    for part in named:
        assert part in line, (part, line)
    assert refusal.max_rss_bytes < MAX_RSS_BYTES, refusal.max_rss_bytes
    assert refusal.wall_s < MAX_WALL_S, refusal.wall_s
    io = work.parent
    assert not (io / "raytmp").exists() and not (work / "ray").exists(), "Ray was started"
    assert not (io / "mlflow.db").exists() and not (io / "cache").exists(), "compute began"
    assert _snapshot(work) == before, "a user file changed, or a file was written"


# --------------------------------------------------------------------- finding 2: YAML alias bombs
def test_alias_bomb_in_a_profile_is_refused_by_the_bounded_loader(work):
    path = profile_with(work, "name: smoke", f"name: {alias_bomb()}")
    before = _snapshot(work)
    refusal = run_script(work, "--profile", str(path))
    assert_refused(refusal, work, before, str(path), "line 5, name[1][0]", "aliases")


def test_alias_bomb_in_a_set_flag_is_refused(work):
    before = _snapshot(work)
    refusal = run_script(work, "--profile", "smoke", "--set", f"train.milestones={alias_bomb()}")
    assert_refused(refusal, work, before, "--set train.milestones", "aliases")


@pytest.mark.parametrize("old, new, named", [
    ("description: tiny", "description: {bomb}\n# tiny", "description[1][0]"),
    ("budget: {num_samples: 5,", "budget: {{num_samples: {bomb},", "budget.num_samples[1][0]"),
    ("name: smoke", "name: {bomb}", "name[1][0]"),
    ("seed: 0\n", "seed: {bomb}\n", "seed[1][0]"),
    ("  input.sigma: {uniform: [1.0, 6.0]}", "  input.sigma: {{uniform: {bomb}}}", "search.input.sigma.uniform"),
])
def test_every_profile_field_goes_through_the_bounded_loader(tmp_path, old, new, named):
    path = profile_with(tmp_path, old, new.format(bomb=alias_bomb()))
    start = time.monotonic()
    with pytest.raises(ConfigError, match="aliases") as refused:
        load_profile(str(path))
    assert named in str(refused.value) and time.monotonic() - start < 1


@pytest.mark.parametrize("text, message", [
    ("[" * 40 + "]" * 40, "nested deeper than"),
    ("x: " + "9" * 5000, "unreadable YAML value"),
    ("a: [1, 2", "not valid YAML"),
])
def test_the_loader_bounds_depth_and_numbers_in_one_line(text, message):
    with pytest.raises(ConfigError, match=message) as refused:
        load_yaml_text(text, "--set x")
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 400


def test_a_profile_file_too_large_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * (2 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        load_profile(str(path))


def test_messages_never_repr_an_unbounded_value(tmp_path):
    path = profile_with(tmp_path, "mode: max", "mode: " + "m" * 100_000)
    with pytest.raises(ConfigError) as refused:
        load_profile(str(path))
    assert len(str(refused.value)) < 400


# --------------------------------------------------------------------- finding 3: rung arithmetic is bounded
def test_a_reduction_factor_a_hair_above_one_is_refused_at_once(work):
    path = profile_with(work, "reduction_factor: 2}", "reduction_factor: 1.0000000001}")
    before = _snapshot(work)
    refusal = run_script(work, "--profile", str(path))
    assert_refused(refusal, work, before, str(path), "asha.reduction_factor", "rungs")


# ------------------------------------------------------- finding 4: every number finite, bounded, a member
def test_nan_cpus_in_a_profile_are_refused_before_ray(work):
    path = profile_with(work, "cpus_per_trial: 1,", "cpus_per_trial: .nan,")
    before = _snapshot(work)
    assert_refused(run_script(work, "--profile", str(path)), work, before, "resources.cpus_per_trial", "finite")


def test_a_point_outside_its_choice_is_refused_before_ray(work):
    path = profile_with(work, "  - {input.representation: body-only,", "  - {input.representation: bodyonly,")
    before = _snapshot(work)
    assert_refused(run_script(work, "--profile", str(path)), work, before,
                   "points_to_evaluate[0].input.representation", "'bodyonly'")


@pytest.mark.parametrize("old, new, named", [
    ("cpus_per_trial: 1,", "cpus_per_trial: .inf,", "resources.cpus_per_trial"),
    ("gpus_per_trial: 0,", "gpus_per_trial: .nan,", "resources.gpus_per_trial"),
    ("sampling_interval_s: 2.0}", "sampling_interval_s: .inf}", "monitoring.sampling_interval_s"),
    ("sampling_interval_s: 2.0}", "sampling_interval_s: .nan}", "monitoring.sampling_interval_s"),
    ("{uniform: [1.0, 6.0]}", "{uniform: [1.0, .inf]}", "search.input.sigma.uniform"),
    ("{uniform: [0.25, 2.0]}", "{uniform: [0.25, .inf]}", "search.input.joint_weight.uniform"),
    ("  loss.class_weighting: {choice", "  train.lr: {loguniform: [0.01, .inf]}\n  loss.class_weighting: {choice",
     "search.train.lr.loguniform"),
    ("{input.representation: body-only,", "{input.representation: banana,", "points_to_evaluate[0]"),
    ("input.sigma: 4.0, input.joint", "input.sigma: 60.0, input.joint", "points_to_evaluate[0].input.sigma"),
    ("metric: val/macro_f1", "metric: val/macro_f", "metric"),
    ("metric: val/macro_f1", "metric: test/macro_f1", "metric"),
    ("mode: max", "mode: min", "mode"),
    ("  loss.class_weighting: {choice", "  train.iterations: {int: [1, 1000000000000000000000000000000]}\n"
                                        "  loss.class_weighting: {choice", "search.train.iterations.int"),
    ("num_samples: 5,", "num_samples: 1000000000000000000000,", "budget.num_samples"),
    ("num_samples: 5,", "num_samples: 1.0e+21,", "budget.num_samples"),
    ("seed: 0\n", "seed: -1\n", "seed"),
    ("synth: {num_sequences: 60,", "synth: {num_sequences: 1000000000000,", "synth.num_sequences"),
    ("grace_period: 3,", "grace_period: 100000000000,", "asha.grace_period"),
])
def test_bad_profile_values_name_their_field(tmp_path, old, new, named):
    path = profile_with(tmp_path, old, new)
    with pytest.raises(ConfigError) as refused:
        load_profile(str(path))
    message = str(refused.value)
    assert str(path) in message and named in message and "\n" not in message, message


def test_a_point_must_build_a_valid_config_with_the_fixed_fields(tmp_path):
    path = profile_with(tmp_path, "  - {input.representation: body-only, input.sigma: 4.0, input.joint_weight: 1.0,",
                        "  - {input.representation: silhouette,")
    path.write_text(path.read_text().replace("  model.width: 8\n", "  model.width: 8\n  model.name: drf\n"))
    with pytest.raises(ConfigError, match=r"points_to_evaluate\[0\]: model.name 'drf' needs skeleton input"):
        load_profile(str(path))


@pytest.mark.parametrize("flags, named", [
    ({"num_samples": 10**21}, "budget.num_samples"),
    ({"cpus_per_trial": float("inf")}, "resources.cpus_per_trial"),
    ({"gpus_per_trial": float("nan")}, "resources.gpus_per_trial"),
    ({"fixed": {"input.sigma": float("inf")}}, "input.sigma"),
])
def test_command_line_overrides_are_checked_like_the_yaml(flags, named):
    with pytest.raises(ConfigError) as refused:
        apply_overrides(load_profile("smoke"), **flags)
    assert named in str(refused.value) and "\n" not in str(refused.value)


# ------------------------------------------------------- finding 6: names are one safe path component
def test_a_name_that_climbs_out_of_the_storage_path_is_refused(work):
    before = _snapshot(work)
    refusal = run_script(work, "--profile", "smoke", "--name", "../victim")
    assert_refused(refusal, work, before, "--name '../victim'")


# The other entry scripts' own main(), run one after another in one interpreter (one import of torch, not three).
OTHER_SCRIPTS = """
import runpy, sys
for script, argv in [("finetune.py", ["--profile", "finetune_smoke", "--from-sweep", "../victim"]),
                     ("table.py", ["--recipe", "table_smoke", "--name", ".."]),
                     ("drf.py", ["--profile", "drf_smoke", "--name", "x" * 500])]:
    main = runpy.run_path(f"{sys.argv[1]}/{script}", run_name="entry")["main"]
    print(script, main(argv + sys.argv[2:]), file=sys.stderr, flush=True)
"""


def test_every_script_checks_its_names_the_same_way(work):
    before = _snapshot(work)
    refusal = run_script(work, "-c", OTHER_SCRIPTS, str(ROOT / "sweeps"), script="")
    lines = refusal.stderr.strip().splitlines()
    assert refusal.code == 0 and len(lines) == 6, refusal.stderr[-3000:]
    for (error, done), label in zip(zip(lines[::2], lines[1::2]), ("finetune sweep", "partition table",
                                                                  "drf comparison")):
        assert error.startswith(f"{label}: error: ") and "a name must be" in error and done.endswith(" 2"), lines
    assert refusal.max_rss_bytes < MAX_RSS_BYTES and refusal.wall_s < MAX_WALL_S
    assert not (work / "ray").exists() and _snapshot(work) == before


def test_a_results_folder_scoliotune_did_not_write_is_never_overwritten(work):
    before = _snapshot(work)  # results/victim/summary.md is the user's: the sweep would rewrite summary.md
    refusal = run_script(work, "--profile", "smoke", "--name", "victim")
    assert_refused(refusal, work, before, "results/victim", "scoliotune did not write")


@pytest.mark.parametrize("name", ["..", ".", "/", "a/b", "../victim", "", "-x", "x" * 65, "a..b", "é", "a b"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(ConfigError, match="a name must be"):
        check_name(name, "--name")


def test_only_folders_scoliotune_marked_are_rewritten(tmp_path):
    user = tmp_path / "results"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    with pytest.raises(WorkdirError, match="notes.txt"):
        claim_folder(user, "this sweep's results")
    assert [p.name for p in user.iterdir()] == ["notes.txt"]
    ours = claim_folder(tmp_path / "ours", "a test")
    (ours / "summary.md").write_text("x")
    check_replaceable(ours, "a test")
    assert (ours / OWNED_MARKER).is_file()


def test_a_winner_checkpoint_folder_that_is_not_a_checkpoint_is_refused_before_compute(tmp_path):
    from scolio_sweep.settings.run_settings import SweepSettings
    from scolio_sweep.stages.prepare import prepare_sweep

    user = tmp_path / "ray" / "victim" / "winner_checkpoint"
    user.mkdir(parents=True)
    (user / "user_notes.txt").write_text("keep")
    settings = SweepSettings(name="victim", storage_path=str(tmp_path / "ray"), results_dir=str(tmp_path / "r"),
                             cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ContractError, match="user_notes.txt"):
        prepare_sweep(load_profile("smoke"), settings, "representation")
    assert (user / "user_notes.txt").read_text() == "keep" and not (tmp_path / "cache").exists()


# -------------------------------------------------- finding 7: results and storage never overlap
def test_results_inside_the_storage_path_are_refused_before_ray(work):
    before = _snapshot(work)
    refusal = run_script(work, "--profile", "smoke", "--results-dir", str(work / "ray"))
    assert_refused(refusal, work, before, "--results-dir", "--storage-path", "overlap")


@pytest.mark.parametrize("storage, results, overlap", [
    ("s", "s", True), ("s", "s/results", True), ("s/ray", "s", True), ("file://{tmp}/s", "s", True),
    ("s", "r", False), ("s3://bucket/x", "s", False), ("s", "s2", False),
])
def test_overlap_is_judged_on_resolved_paths(tmp_path, monkeypatch, storage, results, overlap):
    monkeypatch.chdir(tmp_path)
    check = lambda: check_output_dirs(storage.format(tmp=tmp_path), results)  # noqa: E731
    if overlap:
        with pytest.raises(ConfigError, match="overlap"):
            check()
    else:
        check()


def test_only_the_report_files_are_uploaded(tmp_path, monkeypatch, store):  # noqa: F811
    """A file a user drops into a results folder scoliotune owns is never uploaded with it."""
    from mlflow.tracking import MlflowClient

    from scolio_core.tracking import report
    from scolio_sweep.stages.finish import write_results

    uri, parent = store
    out = claim_folder(tmp_path / "results" / "unit", "this sweep's results")
    (out / "keep.txt").write_text("private")

    def fake_report(tracking_uri, name, out_dir, experiment):
        paths = report.ReportPaths(Path(out_dir), *(Path(out_dir) / f for f in ("l.csv", "l.md", "summary.md")))
        for path in paths.files():
            path.write_text("report")
        return paths

    monkeypatch.setattr(report, "build_report", fake_report)
    context = SimpleNamespace(tracking_uri=uri, name="unit", results_dir=out, experiment=names.DEFAULT_EXPERIMENT,
                              parent_run_id=parent)
    write_results(context)
    uploaded = {f.path for f in MlflowClient(uri).list_artifacts(parent, "results")}
    assert uploaded == {"results/l.csv", "results/l.md", "results/summary.md"}


# ------------------------------------------- finding 10: what a loader runs from a writable artifact store
@pytest.fixture
def registered(synth_root, store, tmp_path):  # noqa: F811
    """A registered tiny model and the folder the artifact store keeps its files in."""
    from scolio_core.tracking.registry import register_study_model

    uri, parent = store
    model = register_study_model(uri, parent_run_id=parent, checkpoint_dir=_checkpoint(synth_root, tmp_path / "ck", 0),
                                 study="unit", experiment=names.DEFAULT_EXPERIMENT, look=1, reopened=False,
                                 test_metrics={"test/macro_f1": 0.5}, test_set_key="k" * 64)
    stored, = (tmp_path / "mlartifacts").rglob("MLmodel")
    return uri, model.uri, stored.parent


def test_an_edited_code_copy_is_refused_before_it_runs(registered, tmp_path):
    from scolio_core.tracking.registry import load_registered_model

    uri, model_uri, stored = registered
    assert load_registered_model(model_uri, uri) is not None  # untouched: loads
    ran = tmp_path / "ran"
    with open(stored / "pyfunc_model.py", "a") as code:
        code.write(f"\nopen({str(ran)!r}, 'w').write('pwned')\n")
    with pytest.raises(ContractError, match="pyfunc_model.py: sha256") as refused:
        load_registered_model(model_uri, uri)
    assert not ran.exists() and "\n" not in str(refused.value)


def test_swapped_weights_with_a_rewritten_hash_list_are_refused(registered):
    import hashlib
    import json

    import mlflow
    import torch
    import yaml

    from scolio_core.tracking.registry import load_registered_model
    from scolio_core.training.checkpoint import checkpoint_hash

    uri, model_uri, stored = registered
    checkpoint = next(p.parent for p in stored.rglob("hashes.json"))
    weights = torch.load(checkpoint / "weights.pt", weights_only=True)
    torch.save({k: torch.zeros_like(v) for k, v in weights.items()}, checkpoint / "weights.pt")
    hashes = json.loads((checkpoint / "hashes.json").read_text())
    hashes["weights.pt"] = hashlib.sha256((checkpoint / "weights.pt").read_bytes()).hexdigest()
    (checkpoint / "hashes.json").write_text(json.dumps(hashes))
    mlflow.set_tracking_uri(uri)
    with pytest.raises(ContractError, match="recorded when this model was registered"):
        mlflow.pyfunc.load_model(model_uri)  # the hash logged in the model config
    # Rewriting the MLmodel's copy of the hash fools a plain MLflow load, not scoliotune's: the version tag decides.
    mlmodel = yaml.safe_load((stored / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"]["config"][names.TAG_CHECKPOINT_HASH] = checkpoint_hash(checkpoint)
    (stored / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(ContractError, match="recorded when this model was registered"):
        load_registered_model(model_uri, uri)


def test_an_mlmodel_pointing_at_a_pickle_is_refused_before_unpickling(registered, tmp_path):
    import yaml

    from scolio_core.tracking.registry import load_registered_model

    uri, model_uri, stored = registered
    ran = tmp_path / "ran"
    (stored / "python_model.pkl").write_bytes(pickle.dumps(_Exec(f"open({str(ran)!r}, 'w').write('pwned')")))
    mlmodel = yaml.safe_load((stored / "MLmodel").read_text())
    pyfunc = mlmodel["flavors"]["python_function"]
    pyfunc.pop("model_code_path")
    pyfunc.update(loader_module="mlflow.pyfunc.model", python_model="python_model.pkl")
    (stored / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(ContractError, match="python_model") as refused:
        load_registered_model(model_uri, uri)
    assert not ran.exists() and "\n" not in str(refused.value)


class _Exec:
    """Unpickles as exec(source): what a hostile cloudpickle file does."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self):
        return exec, (self.source,)
