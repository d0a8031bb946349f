"""Which MLflow tracking store a command uses, and opening it for reading.

    uri = resolve_tracking_uri(args.tracking_uri)   # the flag, else $MLFLOW_TRACKING_URI, else the default
    client = open_client(uri)                        # refuses a sqlite file that is not there

The default is one file whatever the working directory: `mlflow.db` in the checkout root (the folder holding
the scolio_core package), where the sweep driver puts it when run from the checkout root. A relative
`sqlite:///mlflow.db` would instead open a different, possibly empty, store from every folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import scolio_core
from scolio_core.errors import ConfigError

if TYPE_CHECKING:  # mlflow is imported when a store is opened, so `scolio audit --help` stays fast
    from mlflow.tracking import MlflowClient

CHECKOUT_ROOT = Path(scolio_core.__file__).resolve().parents[1]
DEFAULT_TRACKING_URI = f"sqlite:///{CHECKOUT_ROOT / 'mlflow.db'}"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # MLflow's own variable
# argparse %-formats help strings: a '%' in the checkout's path must not break --help.
TRACKING_URI_HELP = f"MLflow tracking URI (default ${TRACKING_URI_ENV}, else {DEFAULT_TRACKING_URI})".replace("%", "%%")


def resolve_tracking_uri(flag: str | None) -> str:
    """`flag` when given, else $MLFLOW_TRACKING_URI when set, else DEFAULT_TRACKING_URI."""
    return flag or os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI


def open_client(tracking_uri: str) -> MlflowClient:
    """A client for `tracking_uri`; a missing sqlite file is an error (MLflow would create an empty one)."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri[len("sqlite:///"):])
        if not path.is_file():
            raise ConfigError(f"tracking URI {tracking_uri}: no MLflow database at {path.resolve()} (pass "
                              f"--tracking-uri, or set ${TRACKING_URI_ENV})")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)
