"""Which official partitions and how many seeds a partition table trains: parsed and checked before Ray
(and before torch: the table's command line is refused in a fraction of a second)."""

from __future__ import annotations

from scolio_core.errors import ConfigError

OFFICIAL_PARTITIONS = ("112", "114", "118", "1116")
MAX_SEEDS = 20


def parse_partitions(text: str) -> list[tuple[str, tuple[int, int, int]]]:
    """'112,1116' -> [('112', (1, 1, 2)), ('1116', (1, 1, 16))]: the release's names, ratio pos:neu:neg."""
    parsed = []
    for token in (t.strip() for t in text.split(",")):
        if not (token.startswith("11") and token[2:].isdigit() and int(token[2:]) >= 1):
            raise ConfigError(f"--partitions: {token!r} is not a partition like 112, 114, 118 or 1116 "
                              "(Scoliosis1K_<token>.json; the suffix is the train ratio 1:1:N)")
        parsed.append((token, (1, 1, int(token[2:]))))
    if len({token for token, _ in parsed}) != len(parsed):
        raise ConfigError(f"--partitions: {text!r} names a partition twice")
    return parsed


def parse_seeds(count: int) -> list[int]:
    if count > MAX_SEEDS:  # a look's record on the parent run holds every seed's checkpoint; tags are bounded
        raise ConfigError(f"--seeds must be <= {MAX_SEEDS}, got {count}")
    if count < 1:
        raise ConfigError(f"--seeds must be >= 1, got {count}")
    return list(range(count))
