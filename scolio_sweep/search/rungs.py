"""Where early stopping compares trials: ASHA's rung arithmetic, without Ray (the profile check runs it before
Ray starts; the scheduler and the benchmarks use the same definition)."""

from __future__ import annotations

import math

from scolio_core.errors import ConfigError

# ASHA's rungs grow geometrically, so any useful schedule has a handful; thousands only come from a reduction
# factor a hair above 1 (1.0000000001 gives ~3e9), which would also compare trials at every evaluation.
MAX_RUNGS = 64


def rung_count(max_t: int, grace_period: int, reduction_factor: float) -> int:
    """How many rungs grace * rf^k lie below `max_t`, from logarithms (no loop; exact up to rounding)."""
    if not (math.isfinite(reduction_factor) and reduction_factor > 1):
        raise ConfigError(f"asha.reduction_factor must be a finite number > 1, got {reduction_factor!r}")
    if grace_period < 1:
        raise ConfigError(f"asha.grace_period must be >= 1, got {grace_period!r}")
    if grace_period >= max_t:
        return 0
    return math.ceil(math.log(max_t / grace_period) / math.log(reduction_factor))


def rung_milestones(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The evaluations where trials are compared: grace * rf^k below `max_t` (ASHA's rungs). A schedule with
    more than MAX_RUNGS rungs is a ConfigError naming the reduction factor, so this never loops long."""
    count = rung_count(max_t, grace_period, reduction_factor)
    if count > MAX_RUNGS:
        raise ConfigError(f"asha.reduction_factor {reduction_factor!r} with grace_period {grace_period} gives "
                          f"{count} rungs below {max_t} evaluations (at most {MAX_RUNGS}); use a factor of 2 to 4")
    rungs, rung = [], float(grace_period)
    while rung < max_t:  # at most count + 1 steps (count is bounded above)
        rungs.append(int(round(rung)))
        rung *= reduction_factor
    return sorted(set(rungs))
