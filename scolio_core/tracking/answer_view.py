"""A sweep's recorded answer read back from MLflow: the best set on val and the knob effects
(scolio_core/evaluation/answer.py computes them; scolio_sweep/stages/answer.py records them on the parent run).

    answer_section(tracking_uri, record)   # summary.md's section, from the parent's answer/answer.json
    answer_audit(record)                   # what `scolio audit` says of it, from the parent's tags
"""

from __future__ import annotations

import json

from scolio_core import names
from scolio_core.errors import DataError
from scolio_core.evaluation.answer import answer_markdown
from scolio_core.tracking.record import SweepRecord, download_json


def answer_section(tracking_uri: str, record: SweepRecord) -> list[str]:
    """summary.md's section on the answer; empty when the sweep recorded none."""
    try:
        data = download_json(tracking_uri, record.parent.info.run_id, names.ARTIFACT_ANSWER)
    except DataError as exc:
        return ["", "## The answer: the best set and each knob's effect", "", f"Not readable: {exc}"]
    if data is None:
        return []
    try:
        return answer_markdown(data)
    except (KeyError, TypeError, ValueError) as exc:
        return ["", "## The answer: the best set and each knob's effect", "",
                f"{names.ARTIFACT_ANSWER} does not have the expected fields ({type(exc).__name__}: {exc})"]


def answer_audit(record: SweepRecord) -> dict | None:
    """The best set and whether the selected configuration is in it, from the parent's tags; None when absent."""
    text = record.tags.get(names.TAG_ANSWER_BEST_SET)
    if text is None:
        return None
    try:
        best = json.loads(text)
    except json.JSONDecodeError:
        best = [text]
    inside = record.tags.get(names.TAG_ANSWER_SELECTED_IN_SET)
    return {"best_set": best, "configurations": record.tags.get(names.TAG_ANSWER_CONFIGURATIONS),
            "selected_in_set": None if inside is None else inside == "true"}


def answer_audit_lines(answer: dict | None) -> list[str]:
    """One audit line: the best set, and whether the selected configuration is in it."""
    if answer is None:
        return []
    among = f" of {answer['configurations']}" if answer.get("configurations") else ""
    where = {True: "the selected configuration is in it", False: "the selected configuration is NOT in it",
             None: "the selected configuration is not recorded"}[answer.get("selected_in_set")]
    return [f"- best set on val (model confidence set; {names.ARTIFACT_ANSWER} has p-values and knob effects): "
            f"{len(answer['best_set'])}{among} configurations, {json.dumps(answer['best_set'], ensure_ascii=False)}; "
            f"{where}"]
