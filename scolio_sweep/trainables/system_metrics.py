"""System metrics of a trial — CPU, memory, disk, network, and GPU when NVML finds one — sampled in a background
thread with MLflow's own monitors and handed to Tune with each report, under MLflow's own names.

Trials own no MLflow run (scolio_sweep/engine/callbacks.py's driver-side callback does), so MLflow's `SystemMetricsMonitor`,
which logs into a run itself, does not fit; its monitor classes do. Each report carries the mean of every metric
since the previous report as `system/<name>` (`system/cpu_utilization_percentage`, `system/gpu_0_utilization_
percentage`, ...; network: megabytes since the trial started); the callback logs them on the trial's run at the
report's step, and the MLflow UI shows them in the run's "System metrics" tab. Like MLflow's, the numbers are
node-wide (psutil, NVML: every GPU the node has), not per process.

    with SystemMetricsSampler(interval_s=2.0) as sampler:
        run_training(..., tune_reporter(system_metrics=sampler))

Sampling never stops training: a monitor that fails is reported once (a warning) and sampling ends.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from types import TracebackType

from scolio_core.names import SYSTEM_METRIC_PREFIX

logger = logging.getLogger(__name__)
# psutil's CPU percentage is the utilisation since its previous call *in the same thread*, counted in 10 ms clock
# ticks: every reading is taken in the sampling thread, and never closer than this to the previous one (a shorter
# window reads as mostly rounding, 0 or 100 %).
MIN_WINDOW_S = 0.25
TAKE_TIMEOUT_S = 1.0  # the longest a report waits for its numbers (a take normally answers in about a millisecond)
_STOP = object()


def _monitors() -> list:
    """MLflow's default monitor set: CPU and memory, disk, network, and a GPU one when a driver answers."""
    # Imported here, in the sampling thread: importing mlflow takes ~1.5 s that a trial need not wait for.
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
    from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
    from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor
    from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor
    from mlflow.system_metrics.metrics.rocm_monitor import ROCMMonitor

    monitors = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
    for gpu_monitor in (GPUMonitor, ROCMMonitor):  # NVIDIA (nvidia-ml-py), else AMD (pyrsmi), as MLflow does
        try:
            monitors.append(gpu_monitor())
            break
        except Exception:  # noqa: BLE001 - no driver, no library, no device: CPU metrics only, by design
            logger.debug("no %s on this node", gpu_monitor.__name__, exc_info=True)
    return monitors


class _Take:
    """A report's request for the metrics since the previous one, answered by the sampling thread."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: dict[str, float] = {}


class SystemMetricsSampler:
    """Samples every `interval_s` seconds in a daemon thread; `take()` returns the means since the last take.

    `interval_s=None` switches it off: nothing is started and `take()` returns {}. Every monitor call happens in
    the sampling thread (psutil's CPU baseline is per thread), so a take is a request that thread answers.
    """

    def __init__(self, interval_s: float | None) -> None:
        if interval_s is not None and not interval_s > 0:
            raise ValueError(f"interval_s must be > 0 or None, got {interval_s!r}")
        self.interval_s = interval_s
        self._requests: queue.SimpleQueue = queue.SimpleQueue()  # _Take or _STOP, to the sampling thread
        self._ready = threading.Event()  # the monitors are built (or failed to be)
        self._running = False  # the thread answers takes: set once built, cleared on failure or stop
        self._thread: threading.Thread | None = None
        # Owned by the sampling thread:
        self._monitors: list = []
        self._samples = 0  # since the last take
        self._last_sample = 0.0  # time.monotonic() of the latest reading (or of the CPU baseline)

    def start(self) -> "SystemMetricsSampler":
        if self.interval_s is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="scolio-system-metrics", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._requests.put(_STOP)
            self._thread.join(timeout=10)  # a reading takes milliseconds; never hold up the trial's end for long

    def wait_until_sampling(self, timeout: float) -> bool:
        """True once the monitors are built (False when switched off, failed, or not yet)."""
        return self._ready.wait(timeout) and self._running

    def take(self) -> dict[str, float]:
        """Each metric's mean since the last take, as `system/<name>`; {} when off, failed or not yet started.

        A report sooner than `interval_s` after the previous one gets a reading of its own (unless the previous
        reading is under MIN_WINDOW_S old: then {}). Waits at most TAKE_TIMEOUT_S.
        """
        if not self._running:  # includes the first ~1.5 s, while the thread imports mlflow: never wait for that
            return {}
        request = _Take()
        self._requests.put(request)
        request.done.wait(TAKE_TIMEOUT_S)
        return request.result

    def __enter__(self) -> "SystemMetricsSampler":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------ the sampling thread
    def _run(self) -> None:
        try:
            import psutil

            # The CPU monitor's first reading covers the time since this thread's previous cpu_percent() call:
            # make that the trial's start (data loading included), not the end of the mlflow import below.
            psutil.cpu_percent()
            self._last_sample = time.monotonic()
            self._monitors = _monitors()
            self._running = True
        except Exception as exc:  # noqa: BLE001 - e.g. psutil missing: the trial trains on without metrics
            self._fail(exc)
        finally:
            self._ready.set()
        try:
            while self._monitors:
                due = self._last_sample + self.interval_s - time.monotonic()
                try:
                    request = self._requests.get(timeout=max(due, 0.0))
                except queue.Empty:
                    self._sample()
                    continue
                if request is _STOP:
                    return
                request.result = self._take()
                request.done.set()
        finally:
            self._running = False
            self._answer_pending()

    def _take(self) -> dict[str, float]:
        if not self._samples and time.monotonic() - self._last_sample >= MIN_WINDOW_S:
            self._sample()
        if not self._samples:
            return {}
        try:
            values: dict[str, float] = {}
            for monitor in self._monitors:
                values.update(monitor.aggregate_metrics())
                monitor.clear_metrics()
        except Exception as exc:  # noqa: BLE001 - metrics are a by-product: never fail the trial for them
            self._fail(exc)
            return {}
        self._samples = 0
        return {f"{SYSTEM_METRIC_PREFIX}{name}": float(value) for name, value in values.items()}

    def _sample(self) -> None:
        """One reading from every monitor."""
        try:
            for monitor in self._monitors:
                monitor.collect_metrics()
        except Exception as exc:  # noqa: BLE001 - see _take()
            self._fail(exc)
            return
        self._samples += 1
        self._last_sample = time.monotonic()

    def _answer_pending(self) -> None:
        """Takes that arrived as the thread ended get {} now rather than after TAKE_TIMEOUT_S."""
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            if request is not _STOP:
                request.done.set()

    def _fail(self, exc: Exception) -> None:
        logger.warning("system metrics: sampling stopped for this trial (%s: %s)", type(exc).__name__, exc)
        self._monitors = []
        self._running = False
