"""Foreign checkpoints: OpenGait ScoNet and the DRF authors' checkpoint -> this project's parameter names.

OpenGait saves `{"model": state_dict, "optimizer": ..., "scheduler": ..., "iteration": ...}` (with a
`module.` prefix when saved from DDP). Its ScoNet wraps a torchvision-style ResNet9 in `SetBlockWrapper`
(`Backbone.forward_block.*`): the stem conv is a `BasicConv2d` (`conv1.conv.weight`), the blocks are
torchvision `BasicBlock`s whose convs are plain `nn.Conv2d` (`layerK.0.conv1.weight`).

The DRF author checkpoint has the same layout plus the PGA block under its legacy name
`attention_layer.*` (assumed to hold `channel_gate` and `part_gate` like ours; `PGA.*` is accepted too)
and the class order negative=0, positive=1, neutral=2; the classifier's class axis is permuted into
this project's order (negative, neutral, positive).

Every key must map, every native parameter must be present and every shape must match the network
these weights describe; otherwise a ContractError names the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from scolio_core import CLASS_NAMES
from scolio_core.errors import ContractError
from scolio_core.models.drf import DRF
from scolio_core.models.sconet import ScoNet

# The DRF authors' class order, as their label stub maps folders to indices.
DRF_AUTHOR_CLASS_ORDER: tuple[str, str, str] = ("negative", "positive", "neutral")

_BACKBONE = "Backbone.forward_block."
_BLOCK_PARTS = r"(conv1|bn1|conv2|bn2|downsample\.0|downsample\.1)"
_BN_FIELDS = r"(weight|bias|running_mean|running_var|num_batches_tracked)"

# (foreign key pattern, native replacement) - applied after the `module.` prefix is removed.
_OPENGAIT_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"^{re.escape(_BACKBONE)}conv1\.conv\.weight$"), "backbone.conv1.weight"),
    (re.compile(rf"^{re.escape(_BACKBONE)}bn1\.{_BN_FIELDS}$"), r"backbone.bn1.\1"),
    (re.compile(rf"^{re.escape(_BACKBONE)}(layer[1-4])\.0\.{_BLOCK_PARTS}\.{_BN_FIELDS}$"),
     r"backbone.\1.0.\2.\3"),
    (re.compile(r"^FCs\.fc_bin$"), "part_fcs.weight"),
    (re.compile(r"^BNNecks\.fc_bin$"), "bnneck.classifier"),
    (re.compile(rf"^BNNecks\.bn1d\.{_BN_FIELDS}$"), r"bnneck.bn.\1"),
]
_PGA_RULE = (re.compile(r"^(?:attention_layer|PGA)\.(channel_gate|part_gate)\.(weight|bias)$"), r"pga.\1.\2")

# native prefix -> foreign prefix, only to name keys in error messages.
_FOREIGN_PREFIX = [("backbone.conv1.", f"{_BACKBONE}conv1.conv."), ("backbone.", _BACKBONE),
                   ("part_fcs.weight", "FCs.fc_bin"), ("bnneck.classifier", "BNNecks.fc_bin"),
                   ("bnneck.bn.", "BNNecks.bn1d."), ("pga.", "attention_layer.")]


def _foreign_name(native_key: str) -> str:
    for native, foreign in _FOREIGN_PREFIX:
        if native_key.startswith(native):
            return foreign + native_key[len(native):]
    return native_key


def load_foreign_state(path: str | Path) -> tuple[dict[str, Tensor], int]:
    """Read a foreign checkpoint file safely (weights_only) -> (model state dict, iteration or 0)."""
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"{path}: foreign checkpoint file does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe pickles
        raise ContractError(f"{path}: not loadable as a weights-only torch checkpoint ({exc})") from None
    if isinstance(payload, Mapping) and isinstance(payload.get("model"), Mapping):
        state, iteration = payload["model"], payload.get("iteration", 0)
    elif isinstance(payload, Mapping) and payload and all(isinstance(v, Tensor) for v in payload.values()):
        state, iteration = payload, 0
    else:
        raise ContractError(f"{path}: expected OpenGait's {{'model': state_dict, ...}} or a bare state dict")
    bad = [key for key, value in state.items() if not isinstance(value, Tensor)]
    if bad:
        raise ContractError(f"{path}: model entry {bad[0]!r} is not a tensor")
    return dict(state), int(iteration) if isinstance(iteration, int) else 0


def _strip_module(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop the `module.` prefix DDP adds, if every key carries it."""
    if state and all(key.startswith("module.") for key in state):
        return {key[len("module."):]: value for key, value in state.items()}
    return dict(state)


def _rename(state: Mapping[str, Tensor], rules: list[tuple[re.Pattern[str], str]]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in _strip_module(state).items():
        for pattern, replacement in rules:
            if pattern.match(key):
                out[pattern.sub(replacement, key)] = value
                break
        else:
            raise ContractError(f"foreign checkpoint key {key!r} is not part of the expected layout; "
                                "refusing to import it")
    return out


def _shape_of(state: Mapping[str, Tensor], key: str, foreign_key: str, dims: int) -> tuple[int, ...]:
    if key not in state:
        raise ContractError(f"foreign checkpoint is missing {foreign_key!r}")
    shape = tuple(state[key].shape)
    if len(shape) != dims:
        raise ContractError(f"foreign checkpoint key {foreign_key!r} has shape {list(shape)}, expected {dims} dims")
    return shape


def _reference(state: Mapping[str, Tensor], with_pga: bool) -> dict[str, torch.Size]:
    """Parameter shapes of the native network the converted weights describe."""
    width, in_channels = _shape_of(state, "backbone.conv1.weight", "Backbone.forward_block.conv1.conv.weight", 4)[:2]
    parts, _, embed_dim = _shape_of(state, "part_fcs.weight", "FCs.fc_bin", 3)
    # Built on CPU: the meta device would be free of memory but costs seconds of one-off set-up.
    model = (DRF(in_channels, width=width, embed_dim=embed_dim, parts=parts, use_pga=with_pga) if with_pga
             else ScoNet(in_channels, width=width, embed_dim=embed_dim, parts=parts))
    return {key: value.shape for key, value in model.state_dict().items()}


def _check_against_reference(state: Mapping[str, Tensor], with_pga: bool) -> None:
    expected = _reference(state, with_pga)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ContractError(f"foreign checkpoint is missing {_foreign_name(missing[0])!r} "
                            f"(native {missing[0]!r}; {len(missing)} key(s) missing)")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ContractError(f"foreign checkpoint key {_foreign_name(extra[0])!r} does not belong to a network "
                            "of this size (a block that only exists with other widths or strides)")
    for key, shape in expected.items():
        if state[key].shape != shape:
            raise ContractError(f"foreign checkpoint key {_foreign_name(key)!r} (native {key!r}) has shape "
                                f"{list(state[key].shape)}, expected {list(shape)}")


def convert_opengait_state(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """OpenGait ScoNet state dict -> native `ScoNet` state dict (class order is already ours)."""
    state = _rename(sd, _OPENGAIT_RULES)
    _check_against_reference(state, with_pga=False)
    return state


def convert_drf_author_state(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """DRF author state dict -> native `DRF` state dict, classifier permuted into CLASS_NAMES order."""
    state = _rename(sd, _OPENGAIT_RULES + [_PGA_RULE])
    _check_against_reference(state, with_pga=True)
    # Native class j is the author's class DRF_AUTHOR_CLASS_ORDER.index(CLASS_NAMES[j]).
    order = torch.tensor([DRF_AUTHOR_CLASS_ORDER.index(name) for name in CLASS_NAMES])
    state["bnneck.classifier"] = state["bnneck.classifier"].index_select(2, order).contiguous()
    return state
