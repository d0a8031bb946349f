"""Check that a sweep shows up in the real MLflow UI, in headless Chromium, and save a screenshot.

    python scripts/check_mlflow_ui.py SWEEP --store mlflow.db [--experiment scoliotune] [--out results/SWEEP]

Starts `mlflow server` on a snapshot of the sqlite store (127.0.0.1, a free port, artifacts in a temp dir),
asks the REST endpoint the runs page itself calls (`/ajax-api/2.0/mlflow/runs/search`) for the sweep's
parent run (tags `scolio.sweep`=SWEEP, `scolio.role`=parent; the oldest, as `scolio report` picks) and its
child runs (`mlflow.parentRunId`),
opens the experiment's runs page in headless Chromium filtered to the sweep, expands the parent row and
checks in the rendered DOM that the parent and its children are on screen. Writes `mlflow_ui.png`
(1600 x 1000) to OUT (default results/SWEEP). When the study registered its tested model (parent tag
`scolio.model_uri` = models:/<name>@<alias>), it also opens that model's page in the Model Registry, checks that
a version shows the alias, and writes `mlflow_model.png`. Exit code 0 when all are visible, 1 otherwise.

Needs Chromium (Debian: `apt-get install -y chromium`; or pass --chromium PATH). The browser is driven over
the DevTools protocol on a pipe (`--remote-debugging-pipe`), so no extra Python package is needed. Only the
server and browser this script started are stopped.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scolio_core import names
from scolio_core.errors import DataError, ScolioError
from scolio_core.tracking import lookups

WINDOW = (1600, 1000)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio")
# A sweep with more trials than fit in the window cannot show them all; this many must be on screen.
MIN_VISIBLE_CHILDREN = 12
MAX_PARAM_COLUMNS = 6
SHARE_TAG, SHARE_KEY = "mlflow.sharedViewState.", "scolio-ui-check"


class UICheckError(ScolioError):
    """The MLflow server or the browser could not be started or did not answer in time."""


@dataclass(frozen=True)
class RunRef:
    run_id: str
    name: str


@dataclass
class UICheckResult:
    """What the browser showed. `visible` holds the run ids whose rows were on screen."""

    url: str
    experiment_id: str
    parent: RunRef
    children: list[RunRef]
    columns: list[str] = field(default_factory=list)
    visible: set[str] = field(default_factory=set)
    screenshot: Path | None = None
    model_uri: str = ""  # the parent's scolio.model_uri: models:/<name>@<alias> ("" before a test look)
    model_visible: bool = False  # the registered model's page showed the alias on a version
    model_screenshot: Path | None = None

    @property
    def parent_visible(self) -> bool:
        return self.parent.run_id in self.visible

    @property
    def visible_children(self) -> list[RunRef]:
        return [run for run in self.children if run.run_id in self.visible]

    @property
    def ok(self) -> bool:
        needed = min(len(self.children), MIN_VISIBLE_CHILDREN)
        runs_ok = self.parent_visible and len(self.visible_children) >= needed
        return runs_ok and (self.model_visible or not self.model_uri)

    def summary(self) -> str:
        lines = [f"url: {self.url}",
                 f"parent {self.parent.name} ({self.parent.run_id}): "
                 f"{'visible' if self.parent_visible else 'NOT visible'}",
                 f"children visible: {len(self.visible_children)}/{len(self.children)}"]
        lines += [f"  {'ok ' if run.run_id in self.visible else 'MISSING'} {run.name} ({run.run_id})"
                  for run in self.children]
        if self.screenshot is not None:
            lines.append(f"screenshot: {self.screenshot}")
        if self.model_uri:
            lines.append(f"registered model {self.model_uri}: "
                         f"{'alias shown on its version' if self.model_visible else 'NOT shown'}")
        if self.model_screenshot is not None:
            lines.append(f"screenshot: {self.model_screenshot}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------- server


def _store_path(store: str | Path) -> Path:
    text = str(store)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
        text = "/" + text.lstrip("/") if text.startswith("/") else text
    elif "://" in text:
        raise DataError(f"--store must be a sqlite file or sqlite:/// URI, got {text!r}")
    path = Path(text)
    if not path.is_file():
        raise DataError(f"{path}: no such MLflow sqlite store")
    return path


def _snapshot(store: Path, dest: Path) -> None:
    # The online-backup API gives a consistent copy even while a sweep is writing, and the server then
    # never touches (or migrates) the user's own store.
    src = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(dest)
        with dst:
            src.backup(dst)
        dst.close()
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{store}: not a readable sqlite MLflow store ({exc})") from None
    finally:
        src.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """`mlflow server` in its own process group on 127.0.0.1; `stop()` ends that group only."""

    def __init__(self, db: Path, workdir: Path, startup_timeout: float = 180.0) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        artifacts = workdir / "artifacts"
        artifacts.mkdir(exist_ok=True)
        self.log_path = workdir / "mlflow_server.log"
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
               "--default-artifact-root", str(artifacts), "--artifacts-destination", str(artifacts),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                                         start_new_session=True)
        self._wait_healthy(startup_timeout)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UICheckError(f"mlflow server exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise UICheckError(f"mlflow server did not answer /health within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}/ajax-api/2.0/mlflow/{endpoint}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            raise UICheckError(f"POST {endpoint} failed: HTTP {exc.code} {exc.read()[:300]!r}") from None

    def get(self, endpoint: str, query: dict[str, str]) -> dict[str, Any]:
        url = f"{self.url}/ajax-api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            raise UICheckError(f"GET {endpoint} failed: HTTP {exc.code} {exc.read()[:300]!r}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            _stop_group(self.proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, the process group this script created for `proc` (start_new_session)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ------------------------------------------------------------------------------------------ the sweep


def find_sweep(server: MlflowServer, sweep: str, experiment: str | None
               ) -> tuple[str, RunRef, list[RunRef], list[str]]:
    """(experiment id, parent, children, table columns) as the runs page's own search endpoint returns them.

    The parent is the oldest one tagged with the sweep's name (lookups.find_parent_run's rule: the one a
    resumed sweep reuses). The columns are the sweep's metric (parent tag `scolio.metric`) and its searched
    knobs (parent params `search.<key>`, which children log as `<key>`), in the UI's column-id form.
    """
    experiments = server.post("experiments/search", {"max_results": 1000}).get("experiments", [])
    if experiment is not None:
        experiments = [e for e in experiments if e["name"] == experiment]
        if not experiments:
            raise DataError(f"no MLflow experiment named {experiment!r} in the store")
    parents = server.post("runs/search", {"experiment_ids": [e["experiment_id"] for e in experiments],
                                          "filter": lookups.parents_filter(sweep),
                                          "order_by": [lookups.OLDEST_FIRST], "max_results": 1}).get("runs", [])
    if not parents:
        where = f"experiment {experiment!r}" if experiment else "any experiment"
        raise DataError(f"no parent run tagged {names.TAG_SWEEP}={sweep!r}, {names.TAG_ROLE}="
                        f"{names.ROLE_PARENT} in {where}")
    parent = parents[0]["info"]
    data = parents[0].get("data", {})
    tags = {t["key"]: t["value"] for t in data.get("tags", [])}
    prefix = names.PARAM_SEARCH_PREFIX
    searched = sorted(p["key"][len(prefix):] for p in data.get("params", []) if p["key"].startswith(prefix))
    columns = [f"metrics.`{tags.get(names.TAG_METRIC, names.DEFAULT_METRIC)}`"]
    columns += [f"params.`{key}`" for key in searched[:MAX_PARAM_COLUMNS]]
    children: list[RunRef] = []
    token = None
    while True:
        body = {"experiment_ids": [parent["experiment_id"]], "max_results": 1000,
                "filter": lookups.children_filter(parent["run_id"])}
        if token:
            body["page_token"] = token
        reply = server.post("runs/search", body)
        children += [RunRef(r["info"]["run_id"], r["info"].get("run_name", "")) for r in reply.get("runs", [])]
        token = reply.get("next_page_token")
        if not token:
            break
    return parent["experiment_id"], RunRef(parent["run_id"], parent.get("run_name", "")), children, columns


def share_view(server: MlflowServer, experiment_id: str, sweep: str, columns: list[str]) -> str:
    """Store a shared view (filter: the sweep's runs; columns: metric and searched knobs) on the snapshot.

    MLflow's UI reads `?viewStateShareKey=K` from the experiment tag `mlflow.sharedViewState.K`; the tag is
    written to the temporary copy this script serves, never to the user's store. Returns K.
    """
    state = {"searchFilter": lookups.sweep_filter(sweep), "selectedColumns": columns}
    server.post("experiments/set-experiment-tag", {"experiment_id": experiment_id, "key": SHARE_TAG + SHARE_KEY,
                                                   "value": json.dumps(state)})
    return SHARE_KEY


def runs_page_url(base: str, experiment_id: str, share_key: str) -> str:
    """The experiment's runs table (hash router) in the shared view; children nest under their parent."""
    query = urllib.parse.urlencode({"viewStateShareKey": share_key, "workflowType": "machine_learning"})
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def parent_model_uri(server: MlflowServer, parent_run_id: str) -> str:
    """The registered model the sweep's study tested (parent tag scolio.model_uri), or ""."""
    tags = server.get("runs/get", {"run_id": parent_run_id}).get("run", {}).get("data", {}).get("tags", [])
    return next((t["value"] for t in tags if t["key"] == names.TAG_MODEL_URI), "")


def model_page_url(base: str, model_uri: str) -> str:
    """The registered model's page (its versions and their aliases) for `models:/<name>@<alias>`."""
    name = model_uri[len("models:/"):].split("@", 1)[0]
    return f"{base}/#/models/{urllib.parse.quote(name)}"


# ---------------------------------------------------------------------------------------------- browser


def find_chromium(explicit: str | None = None) -> str | None:
    if explicit:
        return explicit if shutil.which(explicit) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """Headless Chromium driven over the DevTools protocol on fds 3/4 (NUL-separated JSON messages)."""

    def __init__(self, chromium: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                 "--remote-debugging-pipe", "about:blank"]
        # Chromium expects the pipe on fds 3 and 4 exactly; a tiny exec trampoline puts them there.
        trampoline = ("import os,sys; os.dup2(int(sys.argv[1]),3); os.dup2(int(sys.argv[2]),4); "
                      "os.execv(sys.argv[3], sys.argv[3:])")
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 5) for fd in (to_browser_r, from_browser_w)]  # never 3 or 4
        self.log = open(profile.parent / "chromium.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-c", trampoline, str(high[0]), str(high[1]), chromium, *flags],
                                     pass_fds=high, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        for fd in (to_browser_r, from_browser_w, *high):
            os.close(fd)
        self._next_id = 0
        self._buffer = b""
        self.session: str | None = None

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60.0,
             session: bool = True) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline, method)
            if reply.get("id") == self._next_id:  # anything else is an event: not needed here
                if "error" in reply:
                    raise UICheckError(f"Chromium refused {method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def _read(self, deadline: float, method: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise UICheckError(f"Chromium did not answer {method} in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise UICheckError(f"Chromium exited (code {self.proc.poll()}) during {method}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open_page(self) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                             session=False)
        self.session = attached["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.call("Browser.close", session=False, timeout=10)
                self.proc.wait(timeout=10)
        except (UICheckError, OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            _stop_group(self.proc)
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()


# Run ids whose row link is rendered with a box inside the viewport (ag-grid only renders nearby rows).
_VISIBLE_JS = """(() => {
  const ids = %s, seen = [];
  for (const id of ids) {
    for (const a of document.querySelectorAll(`a[href$="/runs/${id}"]`)) {
      const r = a.getBoundingClientRect();
      if (r.width > 0 && r.height > 0 && r.bottom > 0 && r.top < window.innerHeight) { seen.push(id); break; }
    }
  }
  return seen;
})()"""

# MLflow opens its assistant side panel on a first visit to a local server; it would hide a third of
# the runs table in the screenshot.
_CLOSE_ASSISTANT_JS = """(() => {
  const button = document.querySelector('[data-component-id="mlflow.assistant.chat_panel.close"]');
  if (button) button.click();
  return Boolean(button);
})()"""

# Click the expand button in the parent's Run Name cell (the only button in that cell).
_EXPAND_JS = """(() => {
  const link = document.querySelector('a[href$="/runs/%s"]');
  const cell = link && link.closest('.ag-cell');
  const button = cell && cell.querySelector('button');
  if (!button) return false;
  button.click();
  return true;
})()"""


def _poll_visible(browser: Browser, ids: list[str], want: int, timeout: float) -> set[str]:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        seen = set(browser.evaluate(_VISIBLE_JS % json.dumps(ids)) or [])
        if len(seen) >= want:
            break
        time.sleep(0.5)
    return seen


def _poll_text(browser: Browser, words: list[str], timeout: float) -> bool:
    """Whether the rendered page's text shows every word (the model page: its versions and the alias)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = browser.evaluate("document.body ? document.body.innerText : ''") or ""
        if all(word in text for word in words):
            return True
        time.sleep(0.5)
    return False


# ----------------------------------------------------------------------------------------------- check


def check_mlflow_ui(store: str | Path, sweep: str, out_dir: str | Path | None = None,
                    experiment: str | None = None, chromium: str | None = None,
                    render_timeout: float = 90.0) -> UICheckResult:
    """Serve a snapshot of `store`, show SWEEP's runs page in headless Chromium, save OUT/mlflow_ui.png.

    Raises DataError when the store or sweep is missing, UICheckError when the server or browser fails;
    otherwise returns what was visible (`result.ok`).
    """
    store_path = _store_path(store)
    browser_path = find_chromium(chromium)
    if browser_path is None:
        raise UICheckError(f"Chromium not found ({chromium or 'chromium'}); "
                           "install it with `apt-get install -y chromium` or pass --chromium PATH")
    out = Path(out_dir) if out_dir is not None else Path("results") / sweep
    with tempfile.TemporaryDirectory(prefix="scolio_ui_") as tmp:
        work = Path(tmp)
        db = work / "mlflow.db"
        _snapshot(store_path, db)
        server = MlflowServer(db, work)
        try:
            experiment_id, parent, children, columns = find_sweep(server, sweep, experiment)
            key = share_view(server, experiment_id, sweep, columns)
            result = UICheckResult(runs_page_url(server.url, experiment_id, key), experiment_id, parent, children,
                                   columns)
            browser = Browser(browser_path, work / "profile")
            try:
                browser.open_page()
                browser.call("Page.navigate", {"url": result.url})
                ids = [parent.run_id] + [run.run_id for run in children]
                want_children = min(len(children), MIN_VISIBLE_CHILDREN)
                seen = _poll_visible(browser, [parent.run_id], 1, render_timeout)
                if seen and want_children:
                    # Parents render collapsed; the UI keeps that state in localStorage only, so click.
                    seen = _poll_visible(browser, ids, 1 + want_children, 1.0)
                    if len(seen) < 1 + want_children and browser.evaluate(_EXPAND_JS % parent.run_id):
                        seen = _poll_visible(browser, ids, 1 + want_children, render_timeout / 3)
                browser.evaluate(_CLOSE_ASSISTANT_JS)
                time.sleep(1.5)  # let the table re-layout and late cells paint before the picture
                result.visible = set(browser.evaluate(_VISIBLE_JS % json.dumps(ids)) or [])
                out.mkdir(parents=True, exist_ok=True)
                result.screenshot = out / "mlflow_ui.png"
                browser.screenshot(result.screenshot)
                result.model_uri = parent_model_uri(server, parent.run_id)
                if result.model_uri:
                    alias = result.model_uri.rsplit("@", 1)[1]
                    browser.call("Page.navigate", {"url": model_page_url(server.url, result.model_uri)})
                    result.model_visible = _poll_text(browser, [alias, "Version"], render_timeout)
                    browser.evaluate(_CLOSE_ASSISTANT_JS)
                    time.sleep(1.0)
                    result.model_screenshot = out / "mlflow_model.png"
                    browser.screenshot(result.model_screenshot)
            finally:
                browser.close()
        finally:
            server.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", metavar="SWEEP", help=f"sweep name (the parent run's {names.TAG_SWEEP} tag)")
    parser.add_argument("--store", default="mlflow.db", help="MLflow sqlite store: a path or sqlite:/// URI "
                                                             "(default mlflow.db)")
    parser.add_argument("--experiment", help="only look in this MLflow experiment (default: all)")
    parser.add_argument("--out", help="folder for mlflow_ui.png (default results/SWEEP)")
    parser.add_argument("--chromium", help="Chromium executable (default: chromium on PATH)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the page (default 90)")
    args = parser.parse_args(argv)
    try:
        result = check_mlflow_ui(args.store, args.sweep, args.out, args.experiment, args.chromium, args.timeout)
    except ScolioError as exc:
        print(f"check_mlflow_ui: error: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    print("OK: the sweep's parent and child runs (and its registered model) are visible" if result.ok
          else "FAIL: the sweep's runs are not all visible in the UI")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
