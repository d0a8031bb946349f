"""ScoNet-MT: a per-frame ResNet9, temporal max pooling, a 16-strip horizontal pyramid, part FCs, BN-neck.

The layer layout follows OpenGait's `ScoNet` (the paper's ScoNet-MT, trained with triplet + CE) so that
an OpenGait checkpoint maps one-to-one onto these parameters (see `scolio_core.models.foreign`). Fed 2-channel
skeleton maps instead of silhouettes, the same network is ScoNet-MT-ske.

Input is a packed batch: `frames (N_total, C, H, W)` where sequence i owns `lengths[i]` consecutive rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scolio_core.errors import ConfigError

NUM_CLASSES = 3


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection; a 1x1 conv + BN projects the shortcut when shape changes.

    Args:
        in_channels: channels entering the block.
        out_channels: channels leaving the block.
        stride: stride of the first conv (and of the shortcut projection).
    """

    def __init__(
            self,
            in_channels: int,
            out_channels: int,
            stride: int = 1,
    ):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.relu(x + shortcut)


class ResNet9(nn.Module):
    """Stem (3x3 conv, stride 1, no max-pool) and four one-block stages; a 64x44 frame gives 8w x 16 x 11.

    Args:
        in_channels: 1 for silhouettes, 2 for skeleton maps.
        width: stem width; the stages have width x [1, 2, 4, 8] channels.
        strides: stride of each stage.
    """

    def __init__(
            self,
            in_channels: int,
            width: int = 64,
            strides: tuple[int, int, int, int] = (1, 2, 2, 1),
    ):
        super().__init__()
        channels = [width, 2 * width, 4 * width, 8 * width]
        self.out_channels = channels[-1]
        self.conv1 = conv3x3(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        # One block per stage, as in OpenGait's ScoNet config (layers [1, 1, 1, 1]).
        self.layer1 = nn.Sequential(BasicBlock(width, channels[0], strides[0]))
        self.layer2 = nn.Sequential(BasicBlock(channels[0], channels[1], strides[1]))
        self.layer3 = nn.Sequential(BasicBlock(channels[1], channels[2], strides[2]))
        self.layer4 = nn.Sequential(BasicBlock(channels[2], channels[3], strides[3]))

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (N, w, H, W)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)  # (N, 8w, H/4, W/4)


def temporal_max_pool(features: Tensor, lengths: Tensor) -> Tensor:
    """Max over each sequence's frames: (N_total, c, h, w) -> (n, c, h, w).

    Training batches have equal lengths and take a single reshape; ragged (evaluation) batches are split
    exactly, so padding never enters a maximum.
    """
    counts = [int(v) for v in lengths.tolist()]
    if min(counts, default=1) < 1:
        raise ValueError(f"every sequence needs at least one frame, got lengths {counts}")
    if sum(counts) != features.shape[0]:
        raise ValueError(f"lengths sum to {sum(counts)} but the batch holds {features.shape[0]} frames")
    n = len(counts)
    if n and all(c == counts[0] for c in counts):
        return features.reshape(n, counts[0], *features.shape[1:]).amax(dim=1)
    return torch.stack([chunk.amax(dim=0) for chunk in torch.split(features, counts)])


def horizontal_pool(x: Tensor, parts: int) -> Tensor:
    """Split the rows into `parts` strips and pool each by mean + max: (n, c, h, w) -> (n, c, parts)."""
    n, c, h, w = x.shape
    if h % parts:
        raise ConfigError(f"model.parts={parts} does not divide the final feature-map height {h}; "
                          f"choose a divisor of {h}")
    strips = x.reshape(n, c, parts, (h // parts) * w)
    return strips.mean(dim=-1) + strips.amax(dim=-1)


class SeparateFCs(nn.Module):
    """One bias-free linear map per horizontal part: (n, c_in, p) -> (n, c_out, p).

    Args:
        parts: number of horizontal parts.
        in_features: input channels per part.
        out_features: output channels per part.
    """

    def __init__(
            self,
            parts: int,
            in_features: int,
            out_features: int,
    ):
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(parts, in_features, out_features)))

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(2, 0, 1)  # (p, n, c_in)
        return x.matmul(self.weight).permute(1, 2, 0).contiguous()  # (n, c_out, p)


class SeparateBNNeck(nn.Module):
    """BatchNorm over all part features, then cosine logits per part against normalised class weights.

    The BN runs over the channel-major flatten (feature index = c * parts + p), as OpenGait's parallel BN1d.

    Args:
        parts: number of horizontal parts.
        features: channels per part.
        num_classes: number of classes.
    """

    def __init__(
            self,
            parts: int,
            features: int,
            num_classes: int = NUM_CLASSES,
    ):
        super().__init__()
        self.bn = nn.BatchNorm1d(features * parts)
        self.classifier = nn.Parameter(nn.init.xavier_uniform_(torch.empty(parts, features, num_classes)))

    def forward(self, x: Tensor) -> Tensor:
        n, c, p = x.shape
        x = self.bn(x.reshape(n, c * p)).reshape(n, c, p)
        feature = F.normalize(x.permute(2, 0, 1), dim=-1)  # (p, n, c)
        logits = feature.matmul(F.normalize(self.classifier, dim=1))  # (p, n, classes)
        return logits.permute(1, 2, 0).contiguous()  # (n, classes, p)


def init_weights(module: nn.Module) -> None:
    """OpenGait's initialisation: Xavier-uniform convs/linears, BN weights ~ N(1, 0.02), zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class ScoNet(nn.Module):
    """ScoNet-MT (1-channel silhouettes) or ScoNet-MT-ske (2-channel skeleton maps).

    Returns `{"embeddings": (n, embed_dim, parts), "logits": (n, 3, parts)}`: embeddings are the part-FC
    features the triplet loss uses; logits are per-part cosine similarities (scale them for CE). The
    prediction is the argmax of the part-mean logits.

    Args:
        in_channels: 1 (silhouette) or 2 (skeleton maps).
        width: backbone stem width (published: 64).
        embed_dim: channels per part after the part FCs (published: 256).
        parts: horizontal strips of the final feature map (published: 16).
    """

    def __init__(
            self,
            in_channels: int,
            width: int = 64,
            embed_dim: int = 256,
            parts: int = 16,
    ):
        super().__init__()
        self.parts = parts
        self.backbone = ResNet9(in_channels, width)
        self.part_fcs = SeparateFCs(parts, self.backbone.out_channels, embed_dim)
        self.bnneck = SeparateBNNeck(parts, embed_dim)
        init_weights(self)

    def encode(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """Packed frames -> part-FC embeddings (n, embed_dim, parts)."""
        x = self.backbone(frames)  # (N_total, c, h, w)
        x = temporal_max_pool(x, lengths)  # (n, c, h, w)
        x = horizontal_pool(x, self.parts)  # (n, c, p)
        return self.part_fcs(x)  # (n, embed_dim, p)

    def forward(self, frames: Tensor, lengths: Tensor, pav: Tensor | None = None) -> dict[str, Tensor]:
        embeddings = self.encode(frames, lengths)
        return {"embeddings": embeddings, "logits": self.bnneck(embeddings)}
