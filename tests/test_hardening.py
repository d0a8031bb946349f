"""Issue 27, "Hardening, second pass": the data, checkpoint and CLI layer, one test (or case) per finding.

Every CLI case runs the real entry point `scolio_core.cli.main.main(argv)` in a process of its own and must
exit 2 with one stderr line `scolio <command>: error: ...` naming the file and the reason, with no traceback
and no raw control character, in under 10 s and under 1 GB resident. Files a user owns must survive
byte-identical. As in tests/test_hostile_data.py, one checker subprocess per group imports the commands once
(torch alone takes seconds) and forks one process per case; `os.wait4` gives that process's peak RSS and the
checker times it, under an address-space limit as a safety net. One case also runs as
`python -m scolio_core.cli.main` to show the same line from the real command.

    pytest tests/test_hardening.py
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from _forked_cli import run_forked
from _pickle_ops import PROTO2
from _pickle_ops import global_ as _global
from _pickle_ops import int_ as _int
from _pickle_ops import text as _text
from conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
POSE = "Scoliosis1K-pose-pkl"
PARTITION = "Scoliosis1K_112.json"
MAX_PEAK_BYTES = 1 << 30
MAX_SECONDS = 10.0
KILL_AFTER_SECONDS = 60

# Each case runs the real `main(argv)` in its own fork of one checker (tests/_forked_cli.py).

LIGHT = ["scolio_core.cli.inspect"]
TORCH = ["scolio_core.cli.render", "scolio_core.cli.train", "scolio_core.cli.import_checkpoint",
         "scolio_core.cli.predict", "scolio_core.evaluation.predict", "scolio_core.training.checkpoint",
         "scolio_core.training.loop", "scolio_core.models.foreign"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SCOLIO_TEST_READ_LOG"}
    env.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    return env


# ---------------------------------------------------------------------------------- hostile pickles (finding 1)


def _put(index: int) -> bytes:
    return pickle.BINPUT + bytes([index]) + pickle.POP


def _get(index: int) -> bytes:
    return pickle.BINGET + bytes([index])


def encode_amplifier(calls: int, size: int) -> bytes:
    """One `size`-character string kept in the memo and passed to `_codecs.encode(text, "latin1")` `calls`
    times: each call makes a new `size`-byte object, so the file is ~`size` bytes and allocates calls x size."""
    return (PROTO2 + _global("_codecs", "encode") + _put(0) + _text("a" * size) + _put(1) + _text("latin1")
            + _put(2) + pickle.EMPTY_LIST + pickle.MARK
            + (_get(0) + _get(1) + _get(2) + pickle.TUPLE2 + pickle.REDUCE) * calls + pickle.APPENDS + pickle.STOP)


def set_amplifier(calls: int, length: int) -> bytes:
    """A memoised list of `length` distinct ints passed to `set()` `calls` times (a set per call)."""
    return (PROTO2 + _global("builtins", "set") + _put(0) + pickle.EMPTY_LIST + pickle.BINPUT + b"\x01"
            + pickle.MARK + b"".join(_int(i) for i in range(length)) + pickle.APPENDS + pickle.POP
            + pickle.EMPTY_LIST + pickle.MARK + (_get(0) + _get(1) + pickle.TUPLE1 + pickle.REDUCE) * calls
            + pickle.APPENDS + pickle.STOP)


def test_the_amplifying_pickles_are_live() -> None:
    # Small versions through plain pickle do what the full-size cases claim.
    assert pickle.loads(encode_amplifier(3, 10)) == [b"a" * 10] * 3
    sets = pickle.loads(set_amplifier(3, 300))
    assert sets == [set(range(300))] * 3 and sets[0] is not sets[1]


def test_the_total_budget_is_configurable_and_clean_files_fit() -> None:
    import numpy as np

    from scolio_core.data.safe_pickle import PickleLimits, safe_loads
    from scolio_core.errors import DataError

    two = pickle.dumps([np.zeros(1000, np.uint8), np.zeros(1000, np.uint8)], protocol=2)
    assert len(safe_loads(two, "two.pkl", limits=PickleLimits(max_total_bytes=4100))) == 2
    with pytest.raises(DataError, match="two.pkl: refused: .*more than 3,000 bytes in total"):
        safe_loads(two, "two.pkl", limits=PickleLimits(max_total_bytes=3000))  # each array's latin1 copy counts
    with pytest.raises(DataError, match="more than 500 container items"):
        safe_loads(pickle.dumps(list(range(600))), "list.pkl", limits=PickleLimits(max_total_elements=500))


# ------------------------------------------------------------------------------------------- the CLI cases


@dataclass
class Case:
    name: str
    group: str  # "light" (inspect only) or "torch"
    argv: list[str] = field(default_factory=list)
    expect: tuple[str, ...] = ()  # what the one error line must contain
    user_files: Path | None = None  # a folder whose every file must survive byte-identical
    result: dict = field(default_factory=dict)


def _snapshot(folder: Path) -> dict[str, object]:
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(folder))] = ("link", os.readlink(path))
        elif path.is_file():
            found[str(path.relative_to(folder))] = path.read_bytes()
        else:
            found[str(path.relative_to(folder))] = "dir"
    return found


def _partition(synth_root: Path) -> dict:
    return json.loads((synth_root / PARTITION).read_text())


def _pose_copy(synth_root: Path, base: Path) -> tuple[Path, Path]:
    """A copy of the pose root with the partition beside it; returns (root, partition path)."""
    root = base / POSE
    shutil.copytree(synth_root / POSE, root)
    shutil.copyfile(synth_root / PARTITION, base / PARTITION)
    return root, base / PARTITION


def _first_pkl(root: Path, seq_id: str) -> Path:
    (path,) = (root / seq_id).glob("*/*/*.pkl")
    return path


def _inspect(root: Path, partition: Path) -> list[str]:
    return ["inspect", str(root), "--partition", str(partition), "--modality", "skeleton"]


def _rehash(directory: Path) -> None:
    from scolio_core.training.checkpoint import HASHES, sha256_file

    hashes = json.loads((directory / HASHES).read_text())
    (directory / HASHES).write_text(json.dumps({name: sha256_file(directory / name) for name in hashes}))


class Evil:
    """A foreign checkpoint entry whose unpickling would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _light_cases(synth_root: Path, base: Path) -> list[Case]:
    cases = []
    train_id = _partition(synth_root)["TRAIN_SET"][0]
    for name, payload, expect in [
        ("encode-memo-x2500", lambda: encode_amplifier(2_500, 1 << 20), "PickleLimits.max_total_bytes"),
        ("set-memo-x250", lambda: set_amplifier(250, 700_000), "PickleLimits.max_total_elements"),
    ]:
        root, partition = _pose_copy(synth_root, base / name)
        planted = _first_pkl(root, train_id)
        planted.write_bytes(payload())
        cases.append(Case(name, "light", _inspect(root, partition), (str(planted), expect)))

    # Finding 11: a 5000-digit integer in a partition; an id folder named with a newline and an ESC.
    root, partition = _pose_copy(synth_root, base / "partition-5000-digit-int")
    text = partition.read_text().rstrip().rstrip("}") + ', "seed": ' + "9" * 5000 + "}"
    partition.write_text(text)
    cases.append(Case("partition-5000-digit-int", "light", _inspect(root, partition),
                      (str(partition), "a number of 5,000 characters")))
    root, partition = _pose_copy(synth_root, base / "id-folder-newline-esc")
    (root / "00001\n\x1b[31mFAKE").mkdir()
    cases.append(Case("id-folder-newline-esc", "light", _inspect(root, partition),
                      ("00001\\x0a\\x1b[31mFAKE", "five-digit ids")))

    # Weak findings: a duplicate TEST_SET key; `[[],[],...]` as a partition (16 MiB, and under the size cap).
    root, partition = _pose_copy(synth_root, base / "duplicate-test-set-key")
    values = _partition(synth_root)
    partition.write_text(json.dumps(values)[:-1] + ', "TEST_SET": ' + json.dumps(values["TEST_SET"][:1]) + "}")
    cases.append(Case("duplicate-test-set-key", "light", _inspect(root, partition),
                      (str(partition), "key 'TEST_SET' appears more than once")))
    for name, size, expect in [("nested-lists-16MiB", 16 << 20, "file-size cap"),
                               ("nested-lists-1.9MiB", 1_900_000, "JSON values, over the cap")]:
        root, partition = _pose_copy(synth_root, base / name)
        partition.write_bytes(b"[" + b"[]," * ((size - 4) // 3) + b"[]]")
        cases.append(Case(name, "light", _inspect(root, partition), (str(partition), expect)))
    return cases


def _checkpoint(synth_root: Path, directory: Path) -> Path:
    from scolio_core.data.resolve import resolve_split
    from scolio_core.models import create_model
    from scolio_core.training.checkpoint import write_checkpoint

    config = tiny_config(synth_root)
    model = create_model(config.model, config.input.in_channels)
    return write_checkpoint(directory, config=config, model_state=model.state_dict(),
                            split=resolve_split(config).trainval(), pav_stats=None, iteration=3)


def _torch_cases(synth_root: Path, base: Path) -> list[Case]:
    import torch

    cases = []
    base.mkdir(parents=True)
    partition = synth_root / PARTITION
    train_id = _partition(synth_root)["TRAIN_SET"][0]

    # Finding 5: `scolio train` in a work directory holding files scoliotune did not write.
    config_file = base / "train.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(synth_root).to_dict(), sort_keys=False))
    for name, files, expect in [
        ("train-user-config", {"config.yaml": "my hand-tuned config\n", "results.txt": "keep\n"},
         "config.yaml: exists and scoliotune did not write it"),
        ("train-user-best", {"best.json": '{"mine": 1}\n'}, "best.json: exists and scoliotune did not write it"),
        ("train-user-iter-folder", {"checkpoints/iter_my_old_experiment/results.txt": "years of work\n",
                                    "checkpoints/iter_my_old_experiment/hashes.json": "{}\n"},
         "iter_my_old_experiment: not a checkpoint scoliotune wrote"),
    ]:
        workdir = base / name / "work"
        for relative, content in files.items():
            (workdir / relative).parent.mkdir(parents=True, exist_ok=True)
            (workdir / relative).write_text(content)
        cases.append(Case(name, "torch", ["train", "--config", str(config_file), "--workdir", str(workdir)],
                          (expect, "nothing was changed"), user_files=workdir))

    # Finding 8: import-checkpoint onto a look-alike folder (names right, content not scoliotune's). The input is a
    # valid OpenGait checkpoint (built as tests/test_import.py does), so only the folder check can stop it.
    from test_import import WIDTH, _bn_keys, opengait_layout, random_state

    source = base / "opengait.pt"
    torch.save({"model": random_state({**opengait_layout(1), "FCs.fc_bin": (16, 8 * WIDTH, 256),
                                       "BNNecks.fc_bin": (16, 256, 3),
                                       **{k: (() if k.endswith("tracked") else (4096,)) for k in
                                          _bn_keys("BNNecks.bn1d")}}, seed=5), "iteration": 7}, source)
    for name, marker, expect in [("import-look-alike", False, "no scoliotune marker"),
                                 ("import-marker-bad-hashes", True, "hashes do not verify")]:
        out = base / name / "out"
        out.mkdir(parents=True)
        (out / "hashes.json").write_text(json.dumps({"my": "notes"} if not marker else
                                                    {"weights.pt": "0" * 64, "contract.json": "1" * 64}))
        (out / "weights.pt").write_text("my own weights, as text\n")
        if marker:
            from scolio_core.training.checkpoint import MARKER, MARKER_TEXT

            (out / "contract.json").write_text("{}\n")
            (out / MARKER).write_bytes(MARKER_TEXT)
        cases.append(Case(name, "torch", ["import-checkpoint", "--format", "opengait", str(source), str(out),
                                          "--alignment", "opengait", "--representation", "silhouette",
                                          "--partition", str(partition), "--width", str(WIDTH)],
                          (str(out), expect, "nothing was deleted"), user_files=out))

    # Finding 9: render reads only regular files inside the root.
    root = base / "render-link-out-of-root" / POSE
    shutil.copytree(synth_root / POSE, root)
    planted = _first_pkl(root, train_id)
    outside = base / "render-link-out-of-root" / "outside.pkl"
    shutil.move(planted, outside)
    planted.symlink_to(outside)
    ids = base / "render-link-out-of-root" / "ids.json"
    ids.write_text(json.dumps([train_id]))
    out = base / "render-link-out-of-root" / "maps"
    cases.append(Case("render-link-out-of-root", "torch",
                      ["render", str(root), str(out), "--ids-from", str(ids), "--device", "cpu"],
                      (str(planted), "outside the data root")))
    os.mkfifo(base / "ids.fifo")
    for name, source, expect in [("render-ids-from-dev-zero", "/dev/zero", "a character device"),
                                 ("render-ids-from-fifo", str(base / "ids.fifo"), "a FIFO")]:
        cases.append(Case(name, "torch", ["render", str(synth_root / POSE), str(base / name / "maps"),
                                          "--ids-from", source, "--device", "cpu"], (source, expect)))

    # Finding 11: JSON in a checkpoint with a 5000-digit int or 100k levels; a malicious foreign .pt.
    pose = _first_pkl(synth_root / POSE, train_id)
    for name, victim, content, expect in [
        ("hashes-5000-digit-int", "hashes.json", None, "a number of 5,000 characters"),
        ("contract-5000-digit-int", "contract.json", None, "a number of 5,000 characters"),
        ("contract-100k-deep", "contract.json", "[" * 100_000 + "]" * 100_000, "nested more than"),
    ]:
        directory = _checkpoint(synth_root, base / name / "ckpt")
        path = directory / victim
        if content is None:
            content = path.read_text().rstrip().rstrip("}") + ', "x": ' + "9" * 5000 + "}"
        path.write_text(content)
        if victim != "hashes.json":
            _rehash(directory)  # the hashes verify: only the content is hostile
        cases.append(Case(name, "torch", ["predict", "--checkpoint", str(directory), str(pose), "--device", "cpu"],
                          (str(path), expect)))
    evil = base / "foreign-malicious-pt" / "evil.pt"
    evil.parent.mkdir()
    torch.save({"model": {"w": Evil(base / "foreign-malicious-pt" / "ran")}}, evil)
    cases.append(Case("foreign-malicious-pt", "torch",
                      ["import-checkpoint", "--format", "opengait", str(evil), str(base / "foreign-malicious-pt" / "o"),
                       "--alignment", "opengait", "--representation", "silhouette", "--partition", str(partition)],
                      (str(evil), "refused by weights-only loading", "system")))

    # Finding 12: a sparse 1.5 GiB contract.json whose hash is never reached: the cap is checked before reading.
    directory = _checkpoint(synth_root, base / "contract-sparse-1.5GiB" / "ckpt")
    with open(directory / "contract.json", "r+b") as handle:
        handle.truncate(3 << 29)
    cases.append(Case("contract-sparse-1.5GiB", "torch",
                      ["predict", "--checkpoint", str(directory), str(pose), "--device", "cpu"],
                      (str(directory / "contract.json"), "1,536.0 MiB, over the 4.0 MiB file-size cap")))
    return cases


def _run_checker(cases: list[Case], modules: list[str], base: Path) -> None:
    jobs = []
    for case in cases:
        (base / "out" / case.name).mkdir(parents=True)
        jobs.append((case.name, str(base / "out" / case.name), case.argv))
    results = run_forked(jobs, modules, cwd=base, env=_env(), limit_bytes=6 << 30,
                         kill_after_seconds=KILL_AFTER_SECONDS, timeout=KILL_AFTER_SECONDS * 4)
    for case in cases:
        case.result = results[case.name]


@pytest.fixture(scope="module")
def cli_cases(synth_root, tmp_path_factory) -> dict[str, Case]:
    base = tmp_path_factory.mktemp("hardening")
    light, heavy = _light_cases(synth_root, base / "light"), _torch_cases(synth_root, base / "torch")
    before = {case.name: _snapshot(case.user_files) for case in light + heavy if case.user_files}
    _run_checker(light, LIGHT, base / "light")
    _run_checker(heavy, TORCH, base / "torch")
    for case in light + heavy:
        case.result["user_files_before"] = before.get(case.name)
    return {case.name: case for case in light + heavy}


def _summary(case: Case) -> str:
    out = case.result
    return (f"{case.name}: exit {out['code']}, peak {out['peak_bytes'] / 2**20:.0f} MiB, {out['seconds']:.2f} s"
            f"\nstderr: {out['stderr'][-3000:]}")


def _assert_refused(case: Case) -> None:
    out, detail = case.result, _summary(case)
    print(detail.splitlines()[0])
    command = case.argv[0]
    assert out["code"] == 2, detail
    assert "Traceback" not in out["stderr"] and "\x1b" not in out["stderr"], detail
    lines = [line for line in out["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"scolio {command}: error:"), detail
    for expected in case.expect:
        assert expected in lines[0], f"{expected!r} missing\n{detail}"
    assert out["peak_bytes"] < MAX_PEAK_BYTES, detail
    assert out["seconds"] < MAX_SECONDS, detail
    if case.user_files is not None:
        assert _snapshot(case.user_files) == out["user_files_before"], detail


@pytest.mark.parametrize("name", ["encode-memo-x2500", "set-memo-x250"])
def test_1_memo_amplification_is_capped_for_the_whole_load(cli_cases, name) -> None:
    _assert_refused(cli_cases[name])


@pytest.mark.parametrize("name", ["train-user-config", "train-user-best", "train-user-iter-folder"])
def test_5_train_refuses_a_workdir_holding_files_it_did_not_write(cli_cases, name) -> None:
    _assert_refused(cli_cases[name])


@pytest.mark.parametrize("name", ["import-look-alike", "import-marker-bad-hashes"])
def test_8_import_replaces_only_a_marked_checkpoint_whose_hashes_verify(cli_cases, name) -> None:
    _assert_refused(cli_cases[name])


@pytest.mark.parametrize("name", ["render-link-out-of-root", "render-ids-from-dev-zero", "render-ids-from-fifo"])
def test_9_render_reads_only_bounded_regular_files_inside_the_root(cli_cases, name) -> None:
    _assert_refused(cli_cases[name])
    assert not list(Path(cli_cases[name].argv[2]).glob("*/*/*/*.pkl"))  # nothing was rendered


@pytest.mark.parametrize("name", ["partition-5000-digit-int", "hashes-5000-digit-int", "contract-5000-digit-int",
                                  "contract-100k-deep", "id-folder-newline-esc", "foreign-malicious-pt"])
def test_11_errors_are_one_escaped_line(cli_cases, name) -> None:
    case = cli_cases[name]
    _assert_refused(case)
    assert "weights_only=False" not in case.result["stderr"]
    if name == "foreign-malicious-pt":
        assert not (Path(case.argv[3]).parent / "ran").exists()  # the payload never ran


def test_12_checkpoint_files_are_capped_before_they_are_read(cli_cases) -> None:
    _assert_refused(cli_cases["contract-sparse-1.5GiB"])


@pytest.mark.parametrize("name", ["duplicate-test-set-key", "nested-lists-16MiB", "nested-lists-1.9MiB"])
def test_weak_partitions_refuse_duplicate_keys_and_cap_size_and_values(cli_cases, name) -> None:
    _assert_refused(cli_cases[name])


def test_the_real_command_prints_the_same_escaped_line(cli_cases) -> None:
    # `python -m scolio_core.cli.main` itself, writing to a pipe as it would to a terminal.
    case = cli_cases["id-folder-newline-esc"]
    done = subprocess.run([sys.executable, "-m", "scolio_core.cli.main", *case.argv], env=_env(),
                          capture_output=True, text=True, timeout=KILL_AFTER_SECONDS, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == case.result["stderr"].strip() and len(done.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------- in-process: the helpers other modules must call


def test_5_prune_and_write_remove_only_checkpoints_scoliotune_wrote(synth_root, tmp_path) -> None:
    # training/loop.py prunes old iter_* directories; prune_checkpoints is the call that decides by content.
    from scolio_core.training.checkpoint import prune_checkpoints

    parent = tmp_path / "checkpoints"
    ours = [_checkpoint(synth_root, parent / f"iter_000000{i}") for i in (3, 6, 9)]
    user = parent / "iter_my_old_experiment"
    user.mkdir()
    (user / "results.txt").write_text("years of work")
    (user / "hashes.json").write_text("{}")
    tampered = _checkpoint(synth_root, parent / "iter_0000012")
    (tampered / "weights.pt").write_bytes(b"edited")
    assert prune_checkpoints(parent, keep=[ours[2]]) == ours[:2]
    assert sorted(p.name for p in parent.iterdir()) == ["iter_0000009", "iter_0000012", "iter_my_old_experiment"]
    assert (user / "results.txt").read_text() == "years of work"


def test_5_a_workdir_scoliotune_wrote_is_reused_and_an_edit_is_refused(synth_root, tmp_path) -> None:
    from scolio_core.cli.train import _write_owned, check_workdir
    from scolio_core.errors import WorkdirError

    workdir = tmp_path / "work"
    workdir.mkdir()
    for name in ("config.yaml", "trainval.json", "best.json"):
        _write_owned(workdir, name, f"{name} written by a first run\n")
    _checkpoint(synth_root, workdir / "checkpoints" / "iter_0000003")
    check_workdir(workdir)  # a second run may go ahead
    _write_owned(workdir, "best.json", "a second run\n")
    (workdir / "config.yaml").write_text("edited by hand\n")
    with pytest.raises(WorkdirError, match="config.yaml: exists and scoliotune did not write it"):
        check_workdir(workdir)
    assert (workdir / "config.yaml").read_text() == "edited by hand\n"


@pytest.mark.parametrize("content, expect", [
    ('{"a": 1, "a": 2}', "key 'a' appears more than once"),
    ('{"a": ' + "1" * 41 + "}", "a number of 41 characters"),
    ('{"a": ' + "1." + "0" * 50 + "}", "a number of 52 characters"),
    ("[" * 6 + "]" * 6, "nested more than 5 levels"),
    ("[" + "1," * 20 + "1]", "up to 22 JSON values, over the cap of 10"),
    ("[1, 2", "not valid JSON"),
    (b"\xff", "not UTF-8"),
])
def test_11_json_is_parsed_within_limits_in_one_line(tmp_path, content, expect) -> None:
    from scolio_core.data.bounded import load_json_bounded
    from scolio_core.errors import DataError

    path = tmp_path / "x\nname.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=expect) as info:
        load_json_bounded(path, 1 << 20, max_depth=5, max_values=10)
    assert "\n" not in str(info.value) and "x\\x0aname.json" in str(info.value)
