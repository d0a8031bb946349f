"""Foreign checkpoints: OpenGait and DRF-author layouts convert to native weights with the same predictions.

The reference is an independent functional forward written from OpenGait's ScoNet (evaluation mode) that
reads the *foreign* names directly, so a wrong mapping or a wrong BN-neck layout would change the logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from scolio_core import CLASS_NAMES
from scolio_core.config import ModelConfig
from scolio_core.errors import ContractError
from scolio_core.models import create_model
from scolio_core.models.foreign import (
    DRF_AUTHOR_CLASS_ORDER,
    convert_drf_author_state,
    convert_opengait_state,
    load_foreign_state,
)
from scolio_core.training.checkpoint import read_checkpoint

torch.set_num_threads(1)

WIDTH, EMBED, PARTS = 8, 16, 16
BB = "Backbone.forward_block."


def _bn_keys(prefix: str) -> list[str]:
    return [f"{prefix}.{f}" for f in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def opengait_layout(in_channels: int, width: int = WIDTH) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an OpenGait ScoNet state dict (ResNet9 [1,1,1,1], strides [1,2,2,1])."""
    shapes: dict[str, tuple[int, ...]] = {f"{BB}conv1.conv.weight": (width, in_channels, 3, 3)}
    for key in _bn_keys(f"{BB}bn1"):
        shapes[key] = () if key.endswith("tracked") else (width,)
    c_in = width
    for i, (c, stride) in enumerate(zip([width, 2 * width, 4 * width, 8 * width], [1, 2, 2, 1]), start=1):
        block = f"{BB}layer{i}.0"
        shapes[f"{block}.conv1.weight"] = (c, c_in, 3, 3)
        shapes[f"{block}.conv2.weight"] = (c, c, 3, 3)
        bns = [f"{block}.bn1", f"{block}.bn2"]
        if stride != 1 or c_in != c:
            shapes[f"{block}.downsample.0.weight"] = (c, c_in, 1, 1)
            bns.append(f"{block}.downsample.1")
        for bn in bns:
            for key in _bn_keys(bn):
                shapes[key] = () if key.endswith("tracked") else (c,)
        c_in = c
    shapes["FCs.fc_bin"] = (PARTS, 8 * width, EMBED)
    shapes["BNNecks.fc_bin"] = (PARTS, EMBED, 3)
    for key in _bn_keys("BNNecks.bn1d"):
        shapes[key] = () if key.endswith("tracked") else (EMBED * PARTS,)
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif "bn" in key.split(".")[-2] or "downsample.1" in key:
            state[key] = torch.randn(shape, generator=g) * 0.1 + (1.0 if key.endswith("weight") else 0.0)
        else:
            state[key] = torch.randn(shape, generator=g) * 0.2
    return state


def reference_forward(sd: dict[str, torch.Tensor], frames: torch.Tensor, lengths: list[int],
                      pav: torch.Tensor | None = None) -> torch.Tensor:
    """OpenGait ScoNet (+ author PGA when pav is given), eval mode, straight from foreign keys -> (n, 3, p)."""
    def bn(x, prefix):
        return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"],
                            sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], False, 0.0, 1e-5)

    x = F.relu(bn(F.conv2d(frames, sd[f"{BB}conv1.conv.weight"], padding=1), f"{BB}bn1"))
    for i, stride in enumerate([1, 2, 2, 1], start=1):
        b = f"{BB}layer{i}.0"
        out = F.relu(bn(F.conv2d(x, sd[f"{b}.conv1.weight"], stride=stride, padding=1), f"{b}.bn1"))
        out = bn(F.conv2d(out, sd[f"{b}.conv2.weight"], padding=1), f"{b}.bn2")
        short = x
        if f"{b}.downsample.0.weight" in sd:
            short = bn(F.conv2d(x, sd[f"{b}.downsample.0.weight"], stride=stride), f"{b}.downsample.1")
        x = F.relu(out + short)
    pooled = torch.stack([seq.max(0).values for seq in x.split(lengths)])  # TP: max over frames
    n, c = pooled.shape[:2]
    z = pooled.view(n, c, PARTS, -1)
    feat = z.mean(-1) + z.max(-1)[0]  # HPP
    embed = feat.permute(2, 0, 1).matmul(sd["FCs.fc_bin"]).permute(1, 2, 0)  # (n, 256, p)
    if pav is not None:
        ch = torch.sigmoid(F.linear(pav.reshape(n, -1), sd["attention_layer.channel_gate.weight"],
                                    sd["attention_layer.channel_gate.bias"]))
        part = torch.sigmoid(F.conv1d(pav.transpose(1, 2), sd["attention_layer.part_gate.weight"],
                                      sd["attention_layer.part_gate.bias"]))
        embed = embed * ch[:, :, None] * F.interpolate(part, size=PARTS, mode="linear")
    flat = F.batch_norm(embed.reshape(n, -1), sd["BNNecks.bn1d.running_mean"], sd["BNNecks.bn1d.running_var"],
                        sd["BNNecks.bn1d.weight"], sd["BNNecks.bn1d.bias"], False, 0.0, 1e-5)
    feature = F.normalize(flat.view(n, EMBED, PARTS).permute(2, 0, 1), dim=-1)
    return feature.matmul(F.normalize(sd["BNNecks.fc_bin"], dim=1)).permute(1, 2, 0)


def native(cfg: ModelConfig, in_channels: int, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = create_model(cfg, in_channels)
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture
def opengait_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    sd = random_state(opengait_layout(1), seed=0)
    path = tmp_path / "ScoNet-20000.pt"
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [10000, 14000], 0.1)
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "iteration": 20000}, path)
    return path, sd


def test_opengait_checkpoint_gives_same_logits(opengait_file) -> None:
    path, sd = opengait_file
    state, iteration = load_foreign_state(path)
    assert iteration == 20000
    model = native(ModelConfig(width=WIDTH, embed_dim=EMBED), 1, convert_opengait_state(state))
    frames, lengths = torch.rand(7, 1, 64, 44), [3, 4]
    with torch.no_grad():
        logits = model(frames, torch.tensor(lengths))["logits"]
        torch.testing.assert_close(logits, reference_forward(sd, frames, lengths), rtol=1e-4, atol=1e-5)
    assert logits.std() > 0.01  # random weights give non-trivial logits, so the comparison means something


def author_state(seed: int) -> dict[str, torch.Tensor]:
    shapes = opengait_layout(2)
    shapes.update({"attention_layer.channel_gate.weight": (EMBED, 24), "attention_layer.channel_gate.bias": (EMBED,),
                   "attention_layer.part_gate.weight": (1, 3, 1), "attention_layer.part_gate.bias": (1,)})
    return random_state(shapes, seed)


def test_drf_author_checkpoint_predicts_same_classes(tmp_path: Path) -> None:
    sd = author_state(seed=1)
    path = tmp_path / "drf_author.pt"
    torch.save({"model": sd, "iteration": 5000}, path)
    state, _ = load_foreign_state(path)
    converted = convert_drf_author_state(state)
    assert not any(k.startswith("attention_layer") for k in converted)
    model = native(ModelConfig(name="drf", width=WIDTH, embed_dim=EMBED), 2, converted)
    torch.manual_seed(0)
    lengths = [2, 3, 2, 4, 1, 3]
    frames, pav = torch.rand(sum(lengths), 2, 64, 44), torch.randn(len(lengths), 8, 3)
    with torch.no_grad():
        ours = model(frames, torch.tensor(lengths), pav)["logits"]
        theirs = reference_forward(sd, frames, lengths, pav)
    # Same logits up to the class permutation, hence the same predicted class *names*.
    for j, name in enumerate(CLASS_NAMES):
        torch.testing.assert_close(ours[:, j], theirs[:, DRF_AUTHOR_CLASS_ORDER.index(name)], rtol=1e-4, atol=1e-5)
    ours_names = [CLASS_NAMES[i] for i in ours.mean(2).argmax(1).tolist()]
    theirs_names = [DRF_AUTHOR_CLASS_ORDER[i] for i in theirs.mean(2).argmax(1).tolist()]
    assert ours_names == theirs_names
    assert len(set(ours_names)) > 1  # more than one class predicted: the permutation is exercised


def test_refuses_unknown_missing_and_misshapen_keys() -> None:
    sd = random_state(opengait_layout(1), seed=2)
    with pytest.raises(ContractError, match="'Backbone.forward_block.fc.weight'"):
        convert_opengait_state({**sd, "Backbone.forward_block.fc.weight": torch.zeros(3, 3)})
    missing = dict(sd)
    del missing[f"{BB}layer3.0.downsample.0.weight"]
    with pytest.raises(ContractError, match=r"missing 'Backbone\.forward_block\.layer3\.0\.downsample\.0\.weight'"):
        convert_opengait_state(missing)
    bad = {**sd, "BNNecks.fc_bin": torch.zeros(PARTS, EMBED, 4)}
    shape_message = r"'BNNecks\.fc_bin' \(native 'bnneck\.classifier'\) has shape \[16, 16, 4\]"
    with pytest.raises(ContractError, match=shape_message):
        convert_opengait_state(bad)
    with pytest.raises(ContractError, match=r"missing 'attention_layer\.(channel|part)_gate"):
        convert_drf_author_state(random_state(opengait_layout(2), seed=3))  # DRF without its PGA block


def test_refuses_non_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    torch.save({"model": {"x": "not a tensor"}}, path)
    with pytest.raises(ContractError, match="'x' is not a tensor"):
        load_foreign_state(path)
    with pytest.raises(ContractError, match="does not exist"):
        load_foreign_state(tmp_path / "absent.pt")


def test_import_checkpoint_cli_writes_loadable_checkpoint(opengait_file, tmp_path: Path, capsys) -> None:
    from scolio_core.cli.main import main

    path, sd = opengait_file
    partition = tmp_path / "Scoliosis1K_112.json"
    partition.write_text(json.dumps({"TRAIN_SET": ["00001", "00002"], "TEST_SET": ["00003"]}))
    out = tmp_path / "imported"
    args = ["import-checkpoint", "--format", "opengait", str(path), str(out), "--alignment", "opengait",
            "--representation", "silhouette", "--partition", str(partition), "--width", str(WIDTH)]
    # Width 8 weights with embed 16: the config's embed_dim (256) does not fit, which must be refused.
    assert main(args) == 2
    assert "shape" in capsys.readouterr().err and not out.exists()

    full = random_state({**opengait_layout(1), "FCs.fc_bin": (16, 8 * WIDTH, 256), "BNNecks.fc_bin": (16, 256, 3),
                         **{k: (() if k.endswith("tracked") else (4096,)) for k in _bn_keys("BNNecks.bn1d")}},
                        seed=4)
    torch.save({"model": full, "iteration": 7}, path)
    assert main(args) == 0
    loaded = read_checkpoint(out)
    assert loaded.config.input.representation == "silhouette"
    assert loaded.config.input.alignment == "opengait"
    assert loaded.contract["provenance"]["format"] == "opengait"
    assert loaded.contract["iteration"] == 7
    model = create_model(loaded.config.model, loaded.config.input.in_channels)
    model.load_state_dict(loaded.model_state, strict=True)

    # 1-channel weights stated as a skeleton representation: refused, naming the key.
    assert main(args[:8] + ["body-only"] + args[9:] + ["--sigma", "4"]) == 2
    assert "backbone.conv1.weight" in capsys.readouterr().err


def test_import_checkpoint_refuses_a_directory_holding_a_users_files(opengait_file, tmp_path: Path, capsys) -> None:
    from scolio_core.cli.main import main

    path, _ = opengait_file
    full = random_state({**opengait_layout(1), "FCs.fc_bin": (16, 8 * WIDTH, 256), "BNNecks.fc_bin": (16, 256, 3),
                         **{k: (() if k.endswith("tracked") else (4096,)) for k in _bn_keys("BNNecks.bn1d")}},
                        seed=5)
    torch.save({"model": full, "iteration": 7}, path)
    partition = tmp_path / "Scoliosis1K_112.json"
    partition.write_text(json.dumps({"TRAIN_SET": ["00001", "00002"], "TEST_SET": ["00003"]}))
    users = tmp_path / "my-project"
    users.mkdir()
    (users / "notes.txt").write_text("keep me")
    before = sorted(p.name for p in tmp_path.iterdir())

    def run(out: Path) -> int:
        return main(["import-checkpoint", "--format", "opengait", str(path), str(out), "--alignment", "opengait",
                     "--representation", "silhouette", "--partition", str(partition), "--width", str(WIDTH)])

    assert run(users) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("scolio import-checkpoint: error:"), lines
    assert str(users) in lines[0] and "not a scoliotune checkpoint" in lines[0] and "nothing was deleted" in lines[0]
    assert sorted(p.name for p in users.iterdir()) == ["notes.txt"]
    assert (users / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary sibling left either

    # An earlier import is a scoliotune checkpoint: importing again replaces it, leaving nothing beside it.
    out = tmp_path / "imported"
    assert run(out) == 0
    torch.save({"model": full, "iteration": 8}, path)
    assert run(out) == 0
    assert read_checkpoint(out).contract["iteration"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["imported"])
