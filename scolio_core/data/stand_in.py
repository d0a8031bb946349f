"""The synthetic stand-in a sweep or benchmark builds when no --data-root is given: its settings (a profile's
`synth` section) and the cache it is synthesised into once."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scolio_core.errors import ConfigError


@dataclass(frozen=True)
class SynthSettings:
    """The synthetic stand-in a sweep builds when no --data-root is given."""

    num_sequences: int = 240
    frames: int = 40
    train_ratio: str = "1:1:8"
    seed: int = 0

    def validate(self, where: str) -> None:
        from scolio_core.data.synth import parse_ratio

        for key in ("num_sequences", "frames"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key} must be >= 1, got {getattr(self, key)!r}")
        try:
            parse_ratio(self.train_ratio)
        except ConfigError as exc:
            raise ConfigError(f"{where}.train_ratio: {exc}") from None

    @property
    def cache_key(self) -> str:
        return (f"synth-n{self.num_sequences}-t{self.frames}-r{self.train_ratio.replace(':', '')}"
                f"-s{self.seed}")


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "scoliotune"


def synthetic_root(synth: SynthSettings, cache_dir: Path | None) -> Path:
    """Synthesise the profile's stand-in data set once into the cache (atomic rename) and return it."""
    from scolio_core.data.synth import parse_ratio, synthesize

    root = (cache_dir or default_cache_dir()) / synth.cache_key
    if (root / "synth_meta.json").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    # A fresh folder this call made (never a name someone else could hold), renamed into place when whole.
    tmp = Path(tempfile.mkdtemp(prefix=f".{synth.cache_key}.tmp-", dir=root.parent))
    print(f"synthesising the stand-in data set into {root} (once; cached for later runs)", flush=True)
    try:
        synthesize(tmp, num_sequences=synth.num_sequences, frames=synth.frames,
                   train_ratio=parse_ratio(synth.train_ratio), seed=synth.seed, progress=True)
    except BaseException:  # an interrupted synthesis leaves nothing behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, root)
    except OSError:  # another driver finished first: only our own folder goes
        shutil.rmtree(tmp, ignore_errors=True)
    return root
