"""Every data-contract check in one place: a checkpoint's recorded preprocessing, modality, class order and
split against the data and config it is about to be evaluated on or warm-started with. A seed ensemble is
checked member by member (scolio_core/training/ensemble.py)."""

from __future__ import annotations

from scolio_core.config import ExperimentConfig
from scolio_core.data.splits import TrainValSplit
from scolio_core.errors import ContractError
from scolio_core.training.checkpoint import Checkpoint
from scolio_core.training.ensemble import Ensemble


def contract_violations(checkpoint: Checkpoint | Ensemble, config: ExperimentConfig,
                        evaluated_ids: list[str] | tuple[str, ...], split_name: str,
                        trainval: TrainValSplit | None = None) -> list[str]:
    """Ways evaluating `checkpoint` with `config` on `evaluated_ids` breaks its contract (empty: none);
    with `trainval` (the data's train/val split), also a checkpoint trained on another split. For an ensemble,
    every member's violations, each naming its member folder."""
    if isinstance(checkpoint, Ensemble):
        return [f"{member.directory.name}: {problem}" for member in checkpoint.members
                for problem in contract_violations(member, config, evaluated_ids, split_name, trainval)]
    problems: list[str] = []
    recorded = checkpoint.config.input
    if recorded.modality != config.input.modality:
        problems.append(f"modality: checkpoint {recorded.modality}, data {config.input.modality}")
    for key, value in config.input.__dict__.items():
        if getattr(recorded, key) != value:
            problems.append(f"input.{key}: checkpoint {getattr(recorded, key)!r}, requested {value!r}")
    split = checkpoint.split
    if split is not None:
        overlap = sorted(set(split.train) & set(evaluated_ids))
        if overlap:
            problems.append(f"{len(overlap)} evaluated {split_name} id(s) were training ids of this checkpoint "
                            f"(e.g. {', '.join(overlap[:3])})")
        if trainval is not None and split.fingerprint != trainval.fingerprint:
            # Another partition or val carve: val ids could be its training ids, test ids its val ids.
            problems.append(f"split fingerprint: checkpoint {split.fingerprint[:12]} ({split.partition}), "
                            f"data {trainval.fingerprint[:12]} ({trainval.partition})")
    return problems


def check_contract(checkpoint: Checkpoint | Ensemble, config: ExperimentConfig,
                   evaluated_ids: list[str] | tuple[str, ...], split_name: str, trainval: TrainValSplit | None = None,
                   override: bool = False) -> list[str]:
    """Raise ContractError on violations unless `override`; returns the (overridden) violations."""
    problems = contract_violations(checkpoint, config, evaluated_ids, split_name, trainval)
    if problems and not override:
        raise ContractError(f"{checkpoint.directory}: data contract violated: " + "; ".join(problems)
                            + " (pass --override-contract to evaluate anyway; it is recorded)")
    return problems


def warm_start_violations(baseline: Checkpoint, config: ExperimentConfig, split: TrainValSplit) -> list[str]:
    """Ways a finetune `config` on `split` contradicts the baseline checkpoint it warm-starts from."""
    problems = contract_violations(baseline, config, split.val, "val", trainval=split)
    for key, value in config.model.__dict__.items():
        if getattr(baseline.config.model, key) != value:
            problems.append(f"model.{key}: baseline {getattr(baseline.config.model, key)!r}, finetune {value!r}")
    return problems


def check_warm_start(baseline: Checkpoint, config: ExperimentConfig, split: TrainValSplit,
                     allow_change: bool = False) -> list[str]:
    """Raise ContractError if a finetune contradicts its baseline, unless `allow_change`
    (`train.allow_contract_change`); returns the (allowed) violations."""
    problems = warm_start_violations(baseline, config, split)
    if problems and not allow_change:
        raise ContractError(f"finetune contradicts baseline {baseline.directory}: " + "; ".join(problems)
                            + " (set train.allow_contract_change: true if the change is intended)")
    return problems
