"""MLflow lookups built on scoliotune's names: filter strings and run searches.

    parent = find_parent_run(client, experiment_id, "repr-sweep")   # the oldest parent, or None
    child = find_trial_run(client, experiment_id, parent.info.run_id, trial_id)

The names themselves (tags, params, metrics) are in `scolio_core/names.py`. Writers (the sweep driver's
callbacks, tracking/ledger.py) and readers (tracking/record.py, the finetune stage, scripts/check_mlflow_ui.py)
resolve a sweep through these functions, so every one of them finds the same parent run. The bottom of the
tracking layer: it imports only scolio_core.names and scolio_core.errors (and mlflow's types, for annotations).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scolio_core import names
from scolio_core.errors import ConfigError

if TYPE_CHECKING:  # the lookups only call the client they are given: importing mlflow here would slow --help
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

OLDEST_FIRST = "attributes.start_time ASC"
_PAGE = 1000


# ---------------------------------------------------------------------------------------------- filters
def quote(value: str, what: str) -> str:
    """`value` as an MLflow filter string literal; `what` names it in the error."""
    # MLflow's filter grammar has no escape for a quote inside a string literal.
    if "'" in value:
        raise ConfigError(f"{what} {value!r} must not contain a single quote (it is used in MLflow filters)")
    return f"'{value}'"


def sweep_filter(sweep_name: str) -> str:
    """Every run of a sweep, its parent and its trials."""
    return f"tags.`{names.TAG_SWEEP}` = {quote(sweep_name, 'sweep name')}"


def parents_filter(sweep_name: str | None = None) -> str:
    """The parent runs of `sweep_name`, or of every sweep when None."""
    role = f"tags.`{names.TAG_ROLE}` = '{names.ROLE_PARENT}'"
    return role if sweep_name is None else f"{sweep_filter(sweep_name)} and {role}"


def trials_filter(sweep_name: str) -> str:
    """The trial (child) runs of `sweep_name`, whichever parent they hang under."""
    return f"{sweep_filter(sweep_name)} and tags.`{names.TAG_ROLE}` = '{names.ROLE_TRIAL}'"


def children_filter(parent_run_id: str, *, trial_id: str | None = None, status: str | None = None) -> str:
    """The child runs of one parent; narrowed to one Ray trial and/or one run status when given."""
    text = f"tags.`{names.TAG_PARENT_RUN_ID}` = {quote(parent_run_id, 'run id')}"
    if trial_id is not None:
        text += f" and tags.`{names.TAG_TRIAL_ID}` = {quote(trial_id, 'trial id')}"
    if status is not None:
        text += f" and attributes.status = {quote(status, 'run status')}"
    return text


def test_set_filter(test_set_key: str) -> str:
    """The look experiments of one test set (for `search_experiments`)."""
    return f"tags.`{names.TAG_TEST_SET}` = {quote(test_set_key, 'test set key')}"


test_set_filter.__test__ = False  # not a pytest test


# ---------------------------------------------------------------------------------------------- lookups
def search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    """Every run matching `filter_string`, oldest first (all pages)."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=_PAGE,
                                  order_by=[OLDEST_FIRST], page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_parent_runs(client: MlflowClient, experiment_id: str, sweep_name: str) -> list[Run]:
    """Every parent run tagged with `sweep_name`, oldest first (normally exactly one)."""
    return search_all(client, experiment_id, parents_filter(sweep_name))


def find_parent_run(client: MlflowClient, experiment_id: str, sweep_name: str) -> Run | None:
    """The sweep's parent run: the oldest when there are several (the one a resumed sweep reuses, so it
    holds the trials, the selection and the lockbox ledger); None when the sweep has none."""
    runs = client.search_runs([experiment_id], filter_string=parents_filter(sweep_name), max_results=1,
                              order_by=[OLDEST_FIRST])
    return runs[0] if runs else None


def sweep_names(client: MlflowClient, experiment_id: str) -> list[str]:
    """The names of the sweeps that have a parent run in the experiment, sorted."""
    return sorted({r.data.tags.get(names.TAG_SWEEP, "?")
                   for r in search_all(client, experiment_id, parents_filter())})


def find_child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str, *,
                    status: str | None = None) -> list[Run]:
    """The child runs of a parent (optionally only those with run `status`), oldest first."""
    return search_all(client, experiment_id, children_filter(parent_run_id, status=status))


def find_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str) -> Run | None:
    """The child run of Ray trial `trial_id` under the parent: the oldest if duplicated (the one the
    lifecycle callback logs to); None when the trial has no run."""
    runs = client.search_runs([experiment_id], filter_string=children_filter(parent_run_id, trial_id=trial_id),
                              max_results=1, order_by=[OLDEST_FIRST])
    return runs[0] if runs else None
