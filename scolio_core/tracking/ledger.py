"""The test lockbox's records in MLflow.

`MlflowLedger` is the test-set ledger every entry point shares (see scolio_core.evaluation.lockbox): each
look is its own experiment, `scoliotune-lockbox/look-<n>`, numbered across the whole store. MLflow refuses
to create a second experiment with a name that exists (deleted ones included), in a sqlite store and behind a
tracking server alike, so creating that experiment is the atomic claim of look n. Its tags, written with the
claim (in the same transaction as the experiment) and once at completion, hold the look's records; nothing is
overwritten. With the claim go the (sequence id, class) pairs the look scores (zlib + base64 in one or more
`scolio.look.ids.NNN` tags: 1,493 pairs take about 4 KB) and the look's hash, which covers its opened record,
its pairs and the previous look's hash: a hash chain (`integrity`) in which a deleted, purged, renamed or
edited look shows. Every study whose test ids a look touches gets, on its parent run, that look's number and
hash (`notify`), so even the newest look cannot be purged without a trace.

`ParentRunLog` mirrors a sweep's own looks as tags and metrics on its parent run, which is what
`scolio report` and the leaderboard read. Its entries are never overwritten.

`ledger_provenance` is what a checkpoint records about the ledger of the study that made it (in its
contract's provenance, which `hashes.json` covers); `recorded_ledger` reads it back and `same_ledger`
compares two ledger locations (a cwd-relative sqlite URI is resolved first).
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import zlib
from pathlib import Path

from scolio_core.errors import LockboxError
from scolio_core.names import (
    LOCKBOX_EXPERIMENT_PREFIX,
    TAG_LOCKBOX_ENTRY,
    TAG_LOCKBOX_EVALUATIONS,
    TAG_LOCKBOX_SEEN,
    TAG_LOCKBOX_STATE,
    TAG_LOOK,
    TAG_LOOK_COMPLETED,
    TAG_LOOK_HASH,
    TAG_LOOK_IDS,
    TAG_LOOK_OPENED,
    TAG_TEST_REOPENED,
    TAG_TEST_SET,
    ledger_look_name,
    lockbox_entry_tag,
    lockbox_seen_tag,
    look_experiment_name,
)
from scolio_core.tracking.store import TRACKING_URI_ENV, resolve_tracking_uri

_IDS_CHUNK = 15000  # characters per ids tag (MLflow caps an experiment tag's value at 20,000)


# ------------------------------------------------------------------------------------- ledger location
def normalize_ledger(location: str) -> str:
    """A ledger location in one spelling: an MLflow URI (a relative sqlite path resolved against the working
    directory, as MLflow itself would open it), or a ledger file's absolute path."""
    if location.startswith("sqlite:///"):
        path = location[len("sqlite:///"):]
        return f"sqlite:///{Path(path).expanduser().resolve()}"
    if "://" in location or location.startswith(("databricks", "file:")):
        return location.rstrip("/")
    return str(Path(location).expanduser().resolve())


def same_ledger(a: str, b: str) -> bool:
    return normalize_ledger(a) == normalize_ledger(b)


def ledger_provenance(tracking_uri: str, study: str) -> dict[str, str]:
    """What a checkpoint made by `study` records about its ledger (the `provenance` of its contract)."""
    return {"ledger": normalize_ledger(tracking_uri), "study": study}


def recorded_ledger(checkpoint) -> tuple[str, str] | None:
    """(ledger location, study) a checkpoint recorded, or None (imported, or written outside a study)."""
    provenance = checkpoint.contract.get("provenance") or {}
    ledger = provenance.get("ledger") if isinstance(provenance, dict) else None
    return (str(ledger), str(provenance.get("study") or "?")) if ledger else None


def existing_store(tracking_uri: str) -> bool:
    """False for a sqlite URI whose database file does not exist (opening it would create an empty one)."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(normalize_ledger(tracking_uri)[len("sqlite:///"):]).is_file()
    return True


# ------------------------------------------------------------------------------------------ the pairs
def encode_pairs(pairs) -> list[str]:
    text = ";".join(f"{seq_id}:{label}" for seq_id, label in pairs)
    blob = base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")
    return [blob[i:i + _IDS_CHUNK] for i in range(0, len(blob), _IDS_CHUNK)] or [""]


def decode_pairs(chunks: list[str]) -> list[list[str]] | None:
    try:
        text = zlib.decompress(base64.b64decode("".join(chunks))).decode("utf-8")
    except (ValueError, zlib.error, UnicodeDecodeError):
        return None
    return [item.split(":", 1) for item in text.split(";") if item]


class MlflowLedger:
    """Looks at test sets, kept in the tracking store at `tracking_uri`."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client = None

    @property
    def client(self):
        """Opened on first use: choosing a ledger (or checking one that does not exist) creates no store."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    # ----------------------------------------------------------------------------------------- reading
    def _experiments(self) -> list:
        from mlflow.entities import ViewType

        found, token = [], None
        while True:  # deleted look experiments still count: a look cannot be undone
            page = self.client.search_experiments(view_type=ViewType.ALL, max_results=1000, page_token=token,
                                                  filter_string=f"name LIKE '{LOCKBOX_EXPERIMENT_PREFIX}%'")
            found.extend(page)
            token = page.token
            if not token:
                return [e for e in found if e.name.startswith(LOCKBOX_EXPERIMENT_PREFIX)]

    @staticmethod
    def _look(experiment) -> dict:
        from scolio_core.evaluation.looks import look_hash

        tags = experiment.tags
        try:
            opened = json.loads(tags.get(TAG_LOOK_OPENED, "{}"))
        except json.JSONDecodeError:
            opened = {"unreadable": True}
        chunks = [tags[k] for k in sorted(k for k in tags if k.startswith(TAG_LOOK_IDS))]
        pairs = decode_pairs(chunks) if chunks else None
        look = {"look": int(tags.get(TAG_LOOK, 0) or 0), "state": "opened", **opened}
        look["look"] = int(tags.get(TAG_LOOK, look.get("look", 0)) or 0)
        if TAG_LOOK_COMPLETED in tags:
            try:
                look.update(json.loads(tags[TAG_LOOK_COMPLETED]))
            except json.JSONDecodeError:
                look["unreadable"] = True
            look["state"] = "completed"
        look.update({"key": tags.get(TAG_TEST_SET), "ledger_experiment_id": experiment.experiment_id,
                     "experiment_name": experiment.name, "deleted": experiment.lifecycle_stage == "deleted"})
        if pairs is not None:
            look["pairs"] = pairs
        recorded = tags.get(TAG_LOOK_HASH)
        if recorded:  # a chained look: its hash must still match what it holds
            look["look_hash"] = recorded
            look["hash_ok"] = (not chunks or pairs is not None) and look_hash(opened, pairs) == recorded
        return look

    def all_looks(self) -> list[dict]:
        """Every look in the store, any test set, in look order."""
        return sorted((self._look(e) for e in self._experiments()), key=lambda look: look["look"])

    def looks(self, key: str) -> list[dict]:
        return [look for look in self.all_looks() if look.get("key") == key]

    @staticmethod
    def next_look(key: str, every: list[dict]) -> int:
        return max([int(look["look"]) for look in every], default=0) + 1  # numbered across the store

    def _hash_of(self, look: int) -> str:
        experiment = self.client.get_experiment_by_name(ledger_look_name(look)) if look > 0 else None
        return (experiment.tags.get(TAG_LOOK_HASH) or "") if experiment is not None else ""

    # ----------------------------------------------------------------------------------------- writing
    def claim(self, key: str, look: int, record: dict) -> bool:
        """Create look `look`'s experiment with its records (False when another process created it first).
        Sets `record["prev_hash"]`: the hash chain's link to look `look - 1`."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

        from scolio_core.evaluation.looks import look_hash

        record["prev_hash"] = self._hash_of(look - 1)
        pairs = record.get("pairs")
        opened = {k: v for k, v in record.items() if k != "pairs"}
        tags = {TAG_TEST_SET: key, TAG_LOOK: str(look), TAG_LOOK_OPENED: json.dumps(opened, sort_keys=True),
                TAG_LOOK_HASH: look_hash(opened, pairs)}
        if pairs is not None:
            tags.update({f"{TAG_LOOK_IDS}{i:03d}": chunk for i, chunk in enumerate(encode_pairs(pairs))})
        try:
            self.client.create_experiment(ledger_look_name(look), tags=tags)
        except MlflowException as exc:
            if exc.error_code == ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                return False  # another process claimed look n first
            raise
        return True

    def complete(self, key: str, look: int, record: dict) -> None:
        experiment = (self.client.get_experiment_by_name(ledger_look_name(look))
                      or self.client.get_experiment_by_name(look_experiment_name(key, look)))
        if experiment is None:
            raise LockboxError(f"look {look} vanished from the ledger at {self.tracking_uri} while it ran "
                               "(deleted and purged?); its result is not recorded")
        if TAG_LOOK_COMPLETED in experiment.tags:
            raise LockboxError(f"look {look} in {self.tracking_uri} is already completed; a look's record is "
                               "never overwritten")
        self.client.set_experiment_tag(experiment.experiment_id, TAG_LOOK_COMPLETED,
                                       json.dumps(record, sort_keys=True))

    def notify(self, run_ids: list[str], look: int, digest: str) -> None:
        """Tell each study (its parent run) that look `look` touched its test ids."""
        from mlflow.exceptions import MlflowException

        for run_id in run_ids:
            try:
                self.client.set_tag(run_id, lockbox_seen_tag(look), digest)
            except MlflowException:  # a study whose parent run is gone: its audit cannot run either
                continue

    # ----------------------------------------------------------------------------------------- checking
    def integrity(self, every: list[dict] | None = None) -> list[str]:
        """How the ledger was tampered with: looks missing from the numbering, deleted, renamed, edited after
        they were written, or out of the hash chain. Empty when intact. (Looks recorded before the chain, with
        no hash, are outside it.)"""
        every = self.all_looks() if every is None else every
        chained = {int(look["look"]): look for look in every if look.get("look_hash")}
        problems = []
        if chained:
            missing = sorted(set(range(min(chained), max(chained) + 1)) - set(chained))
            if missing:
                problems.append(f"look(s) {', '.join(map(str, missing))} are missing from the ledger (deleted and "
                                "purged, or renamed out of it)")
        for number, look in sorted(chained.items()):
            if look.get("deleted"):
                problems.append(f"look {number} was deleted (its experiment {look['ledger_experiment_id']} is in "
                                "MLflow's trash)")
            if look.get("experiment_name") != ledger_look_name(number):
                problems.append(f"look {number} was renamed to {look.get('experiment_name')!r}")
            if not look.get("hash_ok"):
                problems.append(f"look {number} was edited after it was written (its record does not match its hash)")
            before = chained.get(number - 1)
            if before is not None and look.get("prev_hash") != before.get("look_hash"):
                problems.append(f"look {number} does not follow look {number - 1} in the hash chain")
        return problems


class ParentRunLog:
    """A sweep's own looks as tags on its MLflow parent run (scope = the sweep), with the test metrics."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id

    def entries(self) -> list[dict]:
        tags = self.client.get_run(self.run_id).data.tags
        rows = []
        for name, value in tags.items():
            if name.startswith(TAG_LOCKBOX_ENTRY):
                try:
                    rows.append(json.loads(value))
                except json.JSONDecodeError:  # MLflow cuts a run tag past 8,000 characters, with only a warning
                    raise LockboxError(f"run {self.run_id}: its look record {name} is not whole JSON (cut by the "
                                       "store, or edited); the record cannot be trusted") from None
        return sorted(rows, key=lambda row: (row["attempt"], row["state"] == "completed"))

    def seen(self) -> dict[int, str]:
        """look number -> hash of every look the study was told of (names.TAG_LOCKBOX_SEEN)."""
        tags = self.client.get_run(self.run_id).data.tags
        return {int(k[len(TAG_LOCKBOX_SEEN):]): v for k, v in tags.items()
                if k.startswith(TAG_LOCKBOX_SEEN) and k[len(TAG_LOCKBOX_SEEN):].isdigit()}

    def append(self, entry: dict) -> None:
        from mlflow.entities import Metric, RunTag

        # One log_batch: MLflow writes its metrics first and then all its tags in one transaction, so a crash
        # mid-append never leaves a "completed" entry without its test metrics or the summary tags.
        slim = {k: v for k, v in entry.items() if k not in ("input", "model", "pairs")}  # tags: <= 8000 chars
        name, text = lockbox_entry_tag(entry["attempt"], entry["state"]), json.dumps(slim, sort_keys=True)
        existing = self.client.get_run(self.run_id).data.tags.get(name)
        if existing is not None and existing != text:
            raise LockboxError(f"run {self.run_id} already records look attempt {entry['attempt']} "
                               f"({entry['state']}) of its study, differently: refused to overwrite it (a look's record "
                               "is never changed; a re-run on another split is another study: use a new name)")
        tags = {name: text, TAG_LOCKBOX_STATE: entry["state"], TAG_LOCKBOX_EVALUATIONS: str(entry["attempt"])}
        if entry.get("look_hash") and entry["state"] == "opened":
            tags[lockbox_seen_tag(int(entry["look"]))] = entry["look_hash"]  # the study holds the chain's head
        if entry.get("test_set"):
            tags[TAG_TEST_SET] = entry["test_set"]
        metrics = []
        if entry["state"] == "completed":
            tags[TAG_TEST_REOPENED] = str(entry["reopened"]).lower()
            now = int(_dt.datetime.now().timestamp() * 1000)
            metrics = [Metric(k, float(v), now, 0) for k, v in entry["metrics"].items() if isinstance(v, (int, float))]
        self.client.log_batch(self.run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()],
                              synchronous=True)


# ------------------------------------------------------------------------------------ choosing a ledger
class DualLedger:
    """A look recorded in the ledger of the study that made the checkpoint (`primary`, which decides) and also
    in another one the user named (`--ledger-override`): the override is itself recorded where the study's
    audit sees it (`ledger_override` in the primary's record)."""

    def __init__(self, primary, secondary, secondary_location: str) -> None:
        self.primary, self.secondary, self.location = primary, secondary, secondary_location
        self._numbers: dict[tuple[str, int], int] = {}

    def looks(self, key: str) -> list[dict]:
        return self.primary.looks(key)

    def all_looks(self) -> list[dict]:
        return self.primary.all_looks()

    def next_look(self, key: str, every: list[dict]) -> int:
        return self.primary.next_look(key, every)

    def claim(self, key: str, look: int, record: dict) -> bool:
        record["ledger_override"] = self.location
        if not self.primary.claim(key, look, record):
            return False
        copy = {k: v for k, v in record.items() if k != "prev_hash"}
        while True:
            number = self.secondary.next_look(key, self.secondary.all_looks())
            if self.secondary.claim(key, number, {**copy, "look": number, "primary_look": look}):
                self._numbers[(key, look)] = number
                return True

    def complete(self, key: str, look: int, record: dict) -> None:
        self.primary.complete(key, look, record)
        self.secondary.complete(key, self._numbers[(key, look)], record)

    def notify(self, run_ids: list[str], look: int, digest: str) -> None:
        notify = getattr(self.primary, "notify", None)
        if notify is not None:
            notify(run_ids, look, digest)


def open_ledger(location: str):
    """The ledger at `location`: an MLflow store (a URI), else a JSON-lines ledger file."""
    if "://" in location or location.startswith("databricks"):
        return MlflowLedger(location)
    from scolio_core.evaluation.looks import FileLedger

    return FileLedger(location)


class LedgerChoice:
    """Which ledger a command records its looks in, and why (said in every refusal: never chosen silently)."""

    def __init__(self, ledger, location: str, source: str) -> None:
        self.ledger, self.location, self.source = ledger, location, source

    def describe(self) -> str:
        return f"ledger {self.location}, {self.source}"


def choose_ledger(*, checkpoint=None, tracking_uri: str | None = None, ledger_file: str | None = None,
                  override: bool = False) -> LedgerChoice:
    """The ledger a look at `checkpoint` (or a check of a split, without one) is recorded in.

    A checkpoint made by a study records that study's ledger (`ledger_provenance`); it is always used, and
    no environment variable changes it. A flag naming another ledger (`--tracking-uri`, `--ledger`) is
    refused in one line unless `override` (`--ledger-override`): then the look is recorded in both, the
    study's ledger deciding. Without a recorded ledger: the flag, else $MLFLOW_TRACKING_URI, else the
    default store (tracking/store.py) — and the choice is named in every refusal."""
    recorded = recorded_ledger(checkpoint) if checkpoint is not None else None
    explicit, flag = (ledger_file, "--ledger") if ledger_file else (tracking_uri, "--tracking-uri")
    if recorded is not None:
        location, study = recorded
        if explicit and not same_ledger(explicit, location):
            if not override:
                raise LockboxError(
                    f"{checkpoint.directory} was made by study {study!r}, whose test ledger is {location}; {flag} "
                    f"{explicit} would record this look where that study's audit never sees it. Leave out {flag} "
                    "(the checkpoint's own ledger is used) or pass --ledger-override to record the look in both")
            other = normalize_ledger(explicit)
            return LedgerChoice(DualLedger(open_ledger(location), open_ledger(other), other), location,
                                f"the ledger of study {study!r} recorded in the checkpoint, and {other} "
                                "(--ledger-override)")
        return LedgerChoice(open_ledger(location), location,
                            f"the ledger of study {study!r} recorded in the checkpoint")
    if explicit:
        location = normalize_ledger(explicit)
        return LedgerChoice(open_ledger(location), location, f"given by {flag}")
    env = os.environ.get(TRACKING_URI_ENV)
    location = normalize_ledger(resolve_tracking_uri(None))
    source = f"chosen by ${TRACKING_URI_ENV}" if env else "the default store"
    return LedgerChoice(open_ledger(location), location, source)
