"""The trial's system-metrics sampler (scolio_sweep/trainables/system_metrics.py) on this machine's real CPU, memory and disk:
MLflow's names, plausible values, a fresh mean after every take, nothing at all when switched off."""

from __future__ import annotations

import threading
import time

import pytest

from scolio_core.names import METRIC_SYSTEM_CPU, SYSTEM_METRIC_PREFIX
from scolio_sweep.trainables.system_metrics import SystemMetricsSampler


def burn_cpu(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(i * i for i in range(1000))


def test_takes_carry_mlflows_system_metrics_with_plausible_values():
    with SystemMetricsSampler(interval_s=0.1) as sampler:
        assert sampler.wait_until_sampling(timeout=60)  # the thread imports mlflow's monitors first
        burn_cpu(1.0)
        taken = sampler.take()

    assert taken and all(key.startswith(SYSTEM_METRIC_PREFIX) for key in taken)
    # A core busy for a second: every sampled window saw it (node-wide numbers, like MLflow's).
    assert 0.0 < taken[METRIC_SYSTEM_CPU] <= 100.0
    assert 0.0 < taken["system/system_memory_usage_percentage"] <= 100.0
    assert taken["system/system_memory_usage_megabytes"] > 0
    assert 0.0 <= taken["system/disk_usage_percentage"] <= 100.0
    assert "scolio-system-metrics" not in [t.name for t in threading.enumerate()]  # stopped with the block


def test_every_take_is_a_fresh_reading_never_a_repeat():
    # An interval far beyond the test: every reading here is one a take asked for.
    with SystemMetricsSampler(interval_s=600) as sampler:
        assert sampler.wait_until_sampling(timeout=60)
        burn_cpu(0.5)
        first = sampler.take()
        assert sampler.take() == {}  # nothing new, and a window this short would read as 0 or 100 %
        burn_cpu(0.5)
        second = sampler.take()
    assert set(first) == set(second) and METRIC_SYSTEM_CPU in first
    assert first[METRIC_SYSTEM_CPU] > 0.0 and second[METRIC_SYSTEM_CPU] > 0.0


def test_a_sampler_switched_off_starts_nothing_and_reports_nothing():
    threads = threading.active_count()
    with SystemMetricsSampler(interval_s=None) as sampler:
        assert threading.active_count() == threads
        assert not sampler.wait_until_sampling(timeout=0.1)
        assert sampler.take() == {}


@pytest.mark.parametrize("interval", [0, -1.0])
def test_a_non_positive_interval_is_refused(interval):
    with pytest.raises(ValueError, match="interval_s"):
        SystemMetricsSampler(interval_s=interval)
