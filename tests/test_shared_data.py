"""Train/val data loaded once by the sweep driver and shared through Ray's object store (scolio_sweep/trainables/shared_data.py).

The Ray test proves three things in one small Tune run: trials that get the driver's refs read no data file
at all (the access log shows none from their processes) and see read-only arrays; the driver read only
train/val ids; and a trial's val metrics are identical with and without sharing.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from conftest import access_log_reads, tiny_config

from scolio_core.data.resolve import resolve_split
from scolio_sweep.search.space import parse_distribution
from scolio_sweep.settings.profile import load_profile
from scolio_sweep.trainables.shared_data import SharedData, freeze, loading_configs, loading_key, trial_data


def _modalities(configs) -> list[tuple[str, int, str]]:
    return sorted((c.input.modality, c.input.impute_neighbors if c.input.modality == "skeleton" else 0,
                   c.model.name) for c in configs)


def test_loading_configs_cover_what_the_search_can_load_once_per_key():
    profile = load_profile("smoke")
    base = profile.base_config()
    # Four representations, sigma, joint weight, loss: two distinct loads (poses, silhouettes).
    assert _modalities(loading_configs(base, profile.search)) == [("silhouette", 0, "sconet"),
                                                                  ("skeleton", 4, "sconet")]
    specs = {"input.representation": {"choice": ["body-only", "silhouette"]},
             "input.impute_neighbors": {"int": [2, 3]}, "model.name": {"choice": ["sconet", "drf"]}}
    search = {key: parse_distribution(spec, key) for key, spec in specs.items()}
    # Imputation only changes poses; DRF (PAVs) only exists with poses, so DRF + silhouette is skipped.
    assert _modalities(loading_configs(base, search)) == [
        ("silhouette", 0, "sconet"), ("skeleton", 2, "drf"), ("skeleton", 2, "sconet"),
        ("skeleton", 3, "drf"), ("skeleton", 3, "sconet")]
    # Too many values to pre-load: the base value only (other trials load for themselves).
    assert _modalities(loading_configs(base, {"input.impute_neighbors": parse_distribution({"int": [1, 60]}, "k")})) == [
        ("skeleton", 4, "sconet")]


def test_loading_key_changes_only_with_what_is_loaded(synth_root):
    config = tiny_config(synth_root)
    split = resolve_split(config).trainval()
    key = loading_key(config, split)
    assert loading_key(config.replace(**{"input.sigma": 2.5, "train.lr": 0.01}), split) == key
    assert loading_key(config.replace(**{"input.representation": "full-body"}), split) == key
    assert loading_key(config.replace(**{"input.impute_neighbors": 2}), split) != key
    assert loading_key(config.replace(**{"model.name": "drf"}), split) != key
    other = resolve_split(config.replace(**{"data.val_seed": 1})).trainval()
    assert loading_key(config, other) != key
    silhouette = config.replace(**{"input.representation": "silhouette"})
    assert loading_key(silhouette, split) != key
    assert loading_key(silhouette.replace(**{"input.impute_neighbors": 2}), split) == loading_key(silhouette, split)


def test_a_key_the_driver_did_not_load_is_loaded_by_the_trial_and_logged(synth_root, caplog):
    config = tiny_config(synth_root)
    split = resolve_split(config).trainval()
    with caplog.at_level(logging.WARNING, logger="scolio_sweep.trainables.shared_data"):
        data = trial_data(config, split, SharedData())
    assert data.train.ids == list(split.train) and data.val.ids == list(split.val)
    assert "was not pre-loaded" in caplog.text and loading_key(config, split) in caplog.text
    frozen = freeze(data)
    with pytest.raises(ValueError, match="read-only"):
        frozen.train.frames[0] += 1


@pytest.mark.parametrize("overrides", [{"input.representation": "silhouette"},
                                       {"model.name": "drf", "train.iterations": 3, "train.eval_every": 3}],
                         ids=["silhouette", "drf-poses-pav"])
@pytest.mark.filterwarnings("error:The given NumPy array is not writable:UserWarning")
def test_the_loop_trains_and_evaluates_on_read_only_data(synth_root, tmp_path, overrides):
    # Shared arrays are read-only: any in-place write in batching, rendering or evaluation would raise here.
    # (Poses without PAVs run read-only in the Ray test below.)
    import torch

    from scolio_core.training.batches import load_trainval
    from scolio_core.training.loop import run_training

    torch.set_num_threads(1)
    config = tiny_config(synth_root, **overrides)
    data = freeze(load_trainval(config, resolve_split(config).trainval()))
    assert not data.train.frames.flags.writeable
    assert (data.train_pav is None) == (config.model.name != "drf")
    reports = []
    run_training(config, data, tmp_path, lambda metrics, _: reports.append(metrics))
    assert reports and reports[-1]["val/n"] == len(data.val)


@pytest.mark.slow
def test_trials_map_the_drivers_copy_read_no_files_and_score_as_unshared(synth_root, tmp_path,
                                                                         ray_with_access_log):
    import ray
    from ray import tune

    from scolio_sweep.trainables.baseline import train_baseline
    from scolio_sweep.trainables.shared_data import share_trainval

    log = ray_with_access_log
    config = tiny_config(synth_root)
    split = resolve_split(config)
    trainval = split.trainval()
    trial_config = config.for_trial()

    # The driver's side of a sweep with one loading key (body-only poses).
    mark = len(access_log_reads(log))
    shared = share_trainval([trial_config], trainval)
    driver_reads = {seq_id for pid, seq_id in access_log_reads(log, mark) if pid == os.getpid()}
    assert driver_reads == set(trainval.train) | set(trainval.val)  # train + val, never a test id
    assert len(shared.refs) == 1

    @ray.remote(num_cpus=0)
    def probe(shared_data):
        import torch

        data = trial_data(trial_config, trainval, shared_data)
        refused = []
        for write in (lambda: data.train.frames.__setitem__((0, 0, 0), 1.0),  # numpy: read-only array
                      lambda: torch.from_numpy(data.val.frames).zero_()):  # torch would write through
            try:
                write()
            except (ValueError, UserWarning) as exc:
                refused.append(str(exc))
        return [a.flags.writeable for a in (data.train.frames, data.val.frames, data.train.labels)], refused

    writeable, refused = ray.get(probe.remote(shared))
    assert writeable == [False, False, False]
    assert len(refused) == 2 and "read-only" in refused[0] and "not writable" in refused[1]

    pid_file = tmp_path / "pids.tsv"

    def trainable(trial: dict, split, shared=None) -> None:
        trial = dict(trial)
        case = trial.pop("case")
        with open(pid_file, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\t{case}\n")
        train_baseline(trial, split, shared if case == "shared" else None)

    space = trial_config.to_flat()
    space["case"] = tune.grid_search(["shared", "own"])
    mark = len(access_log_reads(log))
    results = tune.Tuner(tune.with_parameters(trainable, split=trainval, shared=shared), param_space=space,
                         tune_config=tune.TuneConfig(metric="val/macro_f1", mode="max", reuse_actors=False),
                         run_config=tune.RunConfig(storage_path=str(tmp_path), name="shared")).fit()
    assert not results.errors and len(results) == 2

    pids = {case: int(pid) for pid, case in (line.split("\t") for line in pid_file.read_text().splitlines())}
    assert len(set(pids.values())) == 2  # one process per trial, so reads are attributable
    reads = access_log_reads(log, mark)
    by_case = {case: {seq_id for p, seq_id in reads if p == pid} for case, pid in pids.items()}
    assert by_case["shared"] == set()  # no data file at all: the arrays came from the object store
    assert by_case["own"] == set(trainval.train) | set(trainval.val)
    assert not {seq_id for _, seq_id in reads} & set(split.test)

    frames = {r.config["case"]: r.metrics_dataframe for r in results}
    columns = [c for c in frames["own"].columns if c.startswith("val/") or c == "train/loss"]
    assert "val/macro_f1" in columns and len(frames["own"]) == 2
    for column in columns:
        np.testing.assert_array_equal(frames["shared"][column].to_numpy(),
                                      frames["own"][column].to_numpy(), err_msg=column)
