"""Model registry: `create_model(cfg, in_channels)` builds a network by `ModelConfig.name`.

The names are those of `scolio_core.config.MODEL_INPUTS` (the one table of models); `MODELS` holds one builder
for each of them.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from scolio_core.config import MODEL_DRF, MODEL_INPUTS, MODEL_SCONET, ModelConfig
from scolio_core.errors import ConfigError
from scolio_core.models.drf import DRF, PGA
from scolio_core.models.sconet import ScoNet


def _sconet(cfg: ModelConfig, in_channels: int) -> nn.Module:
    return ScoNet(in_channels, width=cfg.width, embed_dim=cfg.embed_dim, parts=cfg.parts)


def _drf(cfg: ModelConfig, in_channels: int) -> nn.Module:
    return DRF(in_channels, width=cfg.width, embed_dim=cfg.embed_dim, parts=cfg.parts, use_pga=cfg.use_pga)


MODELS: dict[str, Callable[[ModelConfig, int], nn.Module]] = {
    MODEL_SCONET: _sconet,
    MODEL_DRF: _drf,
}


def create_model(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """Build the network `cfg.name` for `in_channels` input channels (1 silhouette, 2 skeleton maps)."""
    try:
        builder = MODELS[cfg.name]
    except KeyError:
        raise ConfigError(f"model.name {cfg.name!r} is not a known model; "
                          f"known: {', '.join(sorted(MODEL_INPUTS))}") from None
    if in_channels < 1:
        raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
    return builder(cfg, in_channels)


__all__ = ["DRF", "MODELS", "PGA", "ScoNet", "create_model"]
