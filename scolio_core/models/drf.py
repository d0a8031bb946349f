"""DRF: ScoNet-MT-ske plus PAV-guided attention (PGA) on the part features.

The PAV (postural asymmetry vector, 8 left/right COCO pairs x 3 metrics, normalised with training-set
statistics) gates the part-FC features before the BN-neck: a channel gate from the whole PAV and a part
gate from each pair, interpolated from the 8 pairs (ordered head to ankles) onto the horizontal strips
(ordered top to bottom).

The triplet embedding is the part-FC feature *before* gating: the metric space then depends on the gait
maps alone and PGA only re-weights what the classifier sees, so `use_pga: false` (the ScoNet-MT-ske
control) and DRF train the same triplet objective on the same features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scolio_core.errors import ConfigError
from scolio_core.models.sconet import ScoNet, init_weights

PAV_PAIRS = 8
PAV_METRICS = 3


class PGA(nn.Module):
    """PAV-guided attention: features * sigmoid(channel gate) * sigmoid(part gate).

    Args:
        features: channels per part of the gated features (the embed dim).
        parts: number of horizontal parts the part gate is interpolated to.
        pairs: left/right keypoint pairs in the PAV.
        metrics: asymmetry metrics per pair.
    """

    def __init__(
            self,
            features: int,
            parts: int,
            pairs: int = PAV_PAIRS,
            metrics: int = PAV_METRICS,
    ):
        super().__init__()
        self.parts = parts
        self.channel_gate = nn.Linear(pairs * metrics, features)
        self.part_gate = nn.Conv1d(metrics, 1, kernel_size=1)

    def forward(self, x: Tensor, pav: Tensor) -> Tensor:
        channel = torch.sigmoid(self.channel_gate(pav.flatten(1)))  # (n, c)
        part = torch.sigmoid(self.part_gate(pav.transpose(1, 2)))  # (n, 1, pairs)
        part = F.interpolate(part, size=self.parts, mode="linear", align_corners=False)  # (n, 1, p)
        return x * channel.unsqueeze(-1).to(x.dtype) * part.to(x.dtype)  # (n, c, p)


class DRF(ScoNet):
    """ScoNet-MT-ske with PGA; `use_pga=False` builds the identical network without the PGA block.

    Args:
        in_channels: 2 (skeleton maps); 1 is accepted for experiments on silhouettes.
        width: backbone stem width (published: 64).
        embed_dim: channels per part after the part FCs (published: 256).
        parts: horizontal strips (published: 16).
        use_pga: build and apply the PAV-guided attention; False ignores the PAV.
    """

    def __init__(
            self,
            in_channels: int,
            width: int = 64,
            embed_dim: int = 256,
            parts: int = 16,
            use_pga: bool = True,
    ):
        super().__init__(in_channels, width=width, embed_dim=embed_dim, parts=parts)
        self.pga: PGA | None = PGA(embed_dim, parts) if use_pga else None
        if self.pga is not None:
            init_weights(self.pga)

    def forward(self, frames: Tensor, lengths: Tensor, pav: Tensor | None = None) -> dict[str, Tensor]:
        embeddings = self.encode(frames, lengths)  # (n, c, p)
        gated = embeddings
        if self.pga is not None:
            n = embeddings.shape[0]
            if pav is None or tuple(pav.shape) != (n, PAV_PAIRS, PAV_METRICS):
                got = None if pav is None else tuple(pav.shape)
                raise ConfigError(f"model 'drf' with use_pga needs pav of shape ({n}, {PAV_PAIRS}, "
                                  f"{PAV_METRICS}), got {got}")
            gated = self.pga(embeddings, pav)
        return {"embeddings": embeddings, "logits": self.bnneck(gated)}
