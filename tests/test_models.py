"""ScoNet / DRF: published parameter counts, shapes, ragged packing, the registry, PGA wiring."""

from __future__ import annotations

import pytest
import torch

from scolio_core.config import MODEL_INPUTS, ModelConfig
from scolio_core.errors import ConfigError
from scolio_core.models import MODELS, create_model

torch.set_num_threads(1)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("in_channels, expected", [(1, 7_014_592), (2, 7_015_168)])
def test_published_parameter_count(in_channels: int, expected: int) -> None:
    assert n_params(create_model(ModelConfig(), in_channels)) == expected


def test_drf_adds_only_the_pga_block() -> None:
    drf = create_model(ModelConfig(name="drf"), 2)
    control = create_model(ModelConfig(name="drf", use_pga=False), 2)
    sconet = create_model(ModelConfig(), 2)
    assert n_params(control) == n_params(sconet) == 7_015_168
    assert n_params(drf) - n_params(control) == (24 * 256 + 256) + (3 + 1)
    assert {k for k in drf.state_dict() if k.startswith("pga.")} == {
        "pga.channel_gate.weight", "pga.channel_gate.bias", "pga.part_gate.weight", "pga.part_gate.bias"}


def test_backbone_feature_map_shape() -> None:
    model = create_model(ModelConfig(width=8), 1).eval()
    with torch.no_grad():
        features = model.backbone(torch.rand(3, 1, 64, 44))
    assert features.shape == (3, 64, 16, 11)  # 8 * width channels, 64x44 -> 16x11


@pytest.mark.parametrize("name, in_channels", [("sconet", 1), ("sconet", 2), ("drf", 2)])
def test_output_shapes(name: str, in_channels: int) -> None:
    model = create_model(ModelConfig(name=name, width=8, embed_dim=32), in_channels).eval()
    frames = torch.rand(2 * 4, in_channels, 64, 44)
    with torch.no_grad():
        out = model(frames, torch.tensor([4, 4]), torch.randn(2, 8, 3))
    assert out["embeddings"].shape == (2, 32, 16)
    assert out["logits"].shape == (2, 3, 16)
    assert out["logits"].abs().max() <= 1.0 + 1e-5  # cosine logits


@pytest.mark.parametrize("name", ["sconet", "drf"])
def test_ragged_packed_batch_equals_per_sequence_forward(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(ModelConfig(name=name, width=8, embed_dim=16), 2).eval()
    lengths = [3, 1, 5]
    frames = torch.rand(sum(lengths), 2, 64, 44)
    pav = torch.randn(3, 8, 3)
    with torch.no_grad():
        packed = model(frames, torch.tensor(lengths), pav)
        start = 0
        for i, length in enumerate(lengths):
            single = model(frames[start:start + length], torch.tensor([length]), pav[i:i + 1])
            start += length
            for key in ("embeddings", "logits"):
                torch.testing.assert_close(packed[key][i], single[key][0], rtol=1e-4, atol=1e-5)


def test_equal_length_fast_path_matches_split_path() -> None:
    from scolio_core.models.sconet import temporal_max_pool

    x = torch.randn(12, 4, 2, 3)
    fast = temporal_max_pool(x, torch.tensor([4, 4, 4]))
    exact = torch.stack([x[0:4].amax(0), x[4:8].amax(0), x[8:12].amax(0)])
    assert torch.equal(fast, exact)
    with pytest.raises(ValueError, match="lengths sum to 11"):
        temporal_max_pool(x, torch.tensor([4, 4, 3]))


def test_every_model_of_the_config_table_has_one_builder() -> None:
    # config.MODEL_INPUTS is the one table of model names: validation accepts exactly what create_model builds.
    assert MODELS.keys() == MODEL_INPUTS.keys()


@pytest.mark.parametrize("name", sorted(MODEL_INPUTS))
def test_forward_backward_finite(name: str) -> None:
    torch.manual_seed(1)
    model = create_model(ModelConfig(name=name, width=8, embed_dim=16), 2).train()
    frames = torch.rand(4 * 3, 2, 64, 44)
    out = model(frames, torch.full((4,), 3), torch.randn(4, 8, 3))
    loss = out["logits"].pow(2).sum() + out["embeddings"].pow(2).mean()
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


def test_channels_last_matches_contiguous() -> None:
    torch.manual_seed(2)
    model = create_model(ModelConfig(width=8, embed_dim=16), 1).eval()
    frames = torch.rand(6, 1, 64, 44)
    with torch.no_grad():
        reference = model(frames, torch.tensor([2, 4]))["logits"]
        model = model.to(memory_format=torch.channels_last)
        result = model(frames.contiguous(memory_format=torch.channels_last), torch.tensor([2, 4]))["logits"]
    torch.testing.assert_close(result, reference, rtol=1e-4, atol=1e-5)


def test_pga_uses_pav_and_control_ignores_it() -> None:
    torch.manual_seed(3)
    frames, lengths = torch.rand(4, 2, 64, 44), torch.tensor([2, 2])
    pav_a, pav_b = torch.randn(2, 8, 3), torch.randn(2, 8, 3)
    drf = create_model(ModelConfig(name="drf", width=8, embed_dim=16), 2).eval()
    control = create_model(ModelConfig(name="drf", width=8, embed_dim=16, use_pga=False), 2).eval()
    with torch.no_grad():
        a, b = drf(frames, lengths, pav_a), drf(frames, lengths, pav_b)
        assert not torch.allclose(a["logits"], b["logits"])
        torch.testing.assert_close(a["embeddings"], b["embeddings"])  # triplet embedding is un-gated
        torch.testing.assert_close(control(frames, lengths, pav_a)["logits"], control(frames, lengths, None)["logits"])
    with pytest.raises(ConfigError, match="needs pav"):
        drf(frames, lengths, None)


def test_unknown_model_lists_known_ones() -> None:
    cfg = ModelConfig.__new__(ModelConfig)
    object.__setattr__(cfg, "name", "resnet50")
    with pytest.raises(ConfigError, match="known: drf, sconet"):
        create_model(cfg, 1)


def test_parts_must_divide_feature_height() -> None:
    model = create_model(ModelConfig(width=4, embed_dim=8, parts=5), 1).eval()
    with pytest.raises(ConfigError, match="model.parts=5"):
        model(torch.rand(2, 1, 64, 44), torch.tensor([2]))
