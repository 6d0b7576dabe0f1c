"""Loading ImageNet ConvNeXt weights from local files in the three public layouts.

The source state dicts are built here from the layouts' literal key patterns (timm,
facebookresearch/ConvNeXt, torchvision), independently of the loader's own mapping.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unifygeo_ros.model.convnext import ConvNeXtEncoder, ConvNeXtHead, load_convnext_weights

DIMS = (8, 16, 24, 32)
DEPTHS = (1, 2, 1, 3)          # stage 4 has 3 blocks in the source; the heads keep one


def _block_tensors(dim, gen):
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    return {"dw_w": r(dim, 1, 7, 7), "dw_b": r(dim), "ln_w": r(dim), "ln_b": r(dim),
            "fc1_w": r(4 * dim, dim), "fc1_b": r(4 * dim), "fc2_w": r(dim, 4 * dim), "fc2_b": r(dim),
            "gamma": r(dim)}


def make_source(fmt: str, seed: int = 0) -> tuple[dict, dict]:
    """Return (state dict in ``fmt``, canonical tensors keyed by (stage, block, part))."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    canon = {("stem", "conv_w"): r(DIMS[0], 3, 4, 4), ("stem", "conv_b"): r(DIMS[0]),
             ("stem", "ln_w"): r(DIMS[0]), ("stem", "ln_b"): r(DIMS[0])}
    for s in range(1, 4):
        canon[(s, "down", "ln_w")] = r(DIMS[s - 1])
        canon[(s, "down", "ln_b")] = r(DIMS[s - 1])
        canon[(s, "down", "conv_w")] = r(DIMS[s], DIMS[s - 1], 2, 2)
        canon[(s, "down", "conv_b")] = r(DIMS[s])
    for s in range(4):
        for b in range(DEPTHS[s]):
            for part, t in _block_tensors(DIMS[s], gen).items():
                canon[(s, b, part)] = t
    sd = {}
    if fmt == "timm":
        sd["stem.0.weight"], sd["stem.0.bias"] = canon[("stem", "conv_w")], canon[("stem", "conv_b")]
        sd["stem.1.weight"], sd["stem.1.bias"] = canon[("stem", "ln_w")], canon[("stem", "ln_b")]
        names = {"dw_w": "conv_dw.weight", "dw_b": "conv_dw.bias", "ln_w": "norm.weight", "ln_b": "norm.bias",
                 "fc1_w": "mlp.fc1.weight", "fc1_b": "mlp.fc1.bias", "fc2_w": "mlp.fc2.weight",
                 "fc2_b": "mlp.fc2.bias", "gamma": "gamma"}
        for s in range(1, 4):
            sd[f"stages.{s}.downsample.0.weight"] = canon[(s, "down", "ln_w")]
            sd[f"stages.{s}.downsample.0.bias"] = canon[(s, "down", "ln_b")]
            sd[f"stages.{s}.downsample.1.weight"] = canon[(s, "down", "conv_w")]
            sd[f"stages.{s}.downsample.1.bias"] = canon[(s, "down", "conv_b")]
        for (s, b, part), t in [(k, v) for k, v in canon.items() if len(k) == 3 and k[1] != "down"]:
            sd[f"stages.{s}.blocks.{b}.{names[part]}"] = t
        sd["head.norm.weight"], sd["head.norm.bias"] = r(DIMS[3]), r(DIMS[3])
        sd["head.fc.weight"], sd["head.fc.bias"] = r(10, DIMS[3]), r(10)
    elif fmt == "facebook":
        sd["downsample_layers.0.0.weight"], sd["downsample_layers.0.0.bias"] = canon[("stem", "conv_w")], canon[("stem", "conv_b")]
        sd["downsample_layers.0.1.weight"], sd["downsample_layers.0.1.bias"] = canon[("stem", "ln_w")], canon[("stem", "ln_b")]
        names = {"dw_w": "dwconv.weight", "dw_b": "dwconv.bias", "ln_w": "norm.weight", "ln_b": "norm.bias",
                 "fc1_w": "pwconv1.weight", "fc1_b": "pwconv1.bias", "fc2_w": "pwconv2.weight",
                 "fc2_b": "pwconv2.bias", "gamma": "gamma"}
        for s in range(1, 4):
            sd[f"downsample_layers.{s}.0.weight"] = canon[(s, "down", "ln_w")]
            sd[f"downsample_layers.{s}.0.bias"] = canon[(s, "down", "ln_b")]
            sd[f"downsample_layers.{s}.1.weight"] = canon[(s, "down", "conv_w")]
            sd[f"downsample_layers.{s}.1.bias"] = canon[(s, "down", "conv_b")]
        for (s, b, part), t in [(k, v) for k, v in canon.items() if len(k) == 3 and k[1] != "down"]:
            sd[f"stages.{s}.{b}.{names[part]}"] = t
        sd["norm.weight"], sd["norm.bias"] = r(DIMS[3]), r(DIMS[3])
        sd["head.weight"], sd["head.bias"] = r(10, DIMS[3]), r(10)
        sd = {"model": sd}                                      # the original release wraps it
    elif fmt == "torchvision":
        sd["features.0.0.weight"], sd["features.0.0.bias"] = canon[("stem", "conv_w")], canon[("stem", "conv_b")]
        sd["features.0.1.weight"], sd["features.0.1.bias"] = canon[("stem", "ln_w")], canon[("stem", "ln_b")]
        names = {"dw_w": "block.0.weight", "dw_b": "block.0.bias", "ln_w": "block.2.weight",
                 "ln_b": "block.2.bias", "fc1_w": "block.3.weight", "fc1_b": "block.3.bias",
                 "fc2_w": "block.5.weight", "fc2_b": "block.5.bias", "gamma": "layer_scale"}
        for s in range(1, 4):
            sd[f"features.{2 * s}.0.weight"] = canon[(s, "down", "ln_w")]
            sd[f"features.{2 * s}.0.bias"] = canon[(s, "down", "ln_b")]
            sd[f"features.{2 * s}.1.weight"] = canon[(s, "down", "conv_w")]
            sd[f"features.{2 * s}.1.bias"] = canon[(s, "down", "conv_b")]
        for (s, b, part), t in [(k, v) for k, v in canon.items() if len(k) == 3 and k[1] != "down"]:
            sd[f"features.{2 * s + 1}.{b}.{names[part]}"] = t.reshape(-1, 1, 1) if part == "gamma" else t
        sd["classifier.0.weight"], sd["classifier.0.bias"] = r(DIMS[3]), r(DIMS[3])
        sd["classifier.2.weight"], sd["classifier.2.bias"] = r(10, DIMS[3]), r(10)
    return sd, canon


def _ours():
    enc = ConvNeXtEncoder(DIMS, DEPTHS[:3])
    heads = [ConvNeXtHead(DIMS[2], DIMS[3], 1), ConvNeXtHead(DIMS[2], DIMS[3], 1)]
    return enc, heads


def _reference_block(x, t):
    """ConvNeXt block as defined by Liu et al. (2022), written out with functional ops."""
    y = F.conv2d(x, t["dw_w"], t["dw_b"], padding=3, groups=x.shape[1]).permute(0, 2, 3, 1)
    y = F.layer_norm(y, (x.shape[1],), t["ln_w"], t["ln_b"], eps=1e-6)
    y = F.linear(F.gelu(F.linear(y, t["fc1_w"], t["fc1_b"])), t["fc2_w"], t["fc2_b"])
    return x + (t["gamma"] * y).permute(0, 3, 1, 2)


@pytest.mark.parametrize("fmt", ["timm", "facebook", "torchvision"])
def test_loads_every_layout_from_a_file(tmp_path, fmt):
    sd, canon = make_source(fmt)
    path = tmp_path / f"convnext_{fmt}.pth"
    torch.save(sd, path)
    enc, heads = _ours()
    report = load_convnext_weights(enc, heads, path)
    assert report.source_format == fmt
    assert report.missing == [] and report.unexpected == []
    assert report.loaded == sum(1 for _ in _targets(enc, heads))
    assert any("head" in k or "classifier" in k or k.startswith("norm") for k in report.ignored)
    # Stage-4 blocks 1 and 2 are not part of the heads: reported as ignored, not loaded.
    assert sum(1 for k in report.ignored if ".3." in k or "stages.3" in k or "features.7" in k) >= 2
    # Values landed where they belong, and both heads got stage 4's first block.
    assert torch.equal(enc.stem.conv.weight, canon[("stem", "conv_w")])
    assert torch.equal(enc.stages[2].downsample.conv.weight, canon[(2, "down", "conv_w")])
    for head in heads:
        assert torch.equal(head.downsample.conv.weight, canon[(3, "down", "conv_w")])
        assert torch.equal(head.blocks[0].pwconv1.weight, canon[(3, 0, "fc1_w")])
    # Semantics: our block computes the reference ConvNeXt block with the loaded tensors.
    x = torch.randn(2, DIMS[1], 9, 11)
    t = {part: canon[(1, 1, part)] for part in ("dw_w", "dw_b", "ln_w", "ln_b", "fc1_w", "fc1_b", "fc2_w",
                                                 "fc2_b", "gamma")}
    with torch.no_grad():
        assert torch.allclose(enc.stages[1].blocks[1](x), _reference_block(x, t), atol=1e-4)


def _targets(enc, heads):
    from unifygeo_ros.model.convnext import _canonical_targets

    return _canonical_targets(enc, heads)


def test_reports_missing_unexpected_and_refuses_wrong_shapes(tmp_path):
    sd, _ = make_source("timm")
    del sd["stages.1.blocks.0.gamma"]
    sd["stages.1.blocks.0.extra_thing"] = torch.zeros(3)
    enc, heads = _ours()
    report = load_convnext_weights(enc, heads, {"state_dict": {"module." + k: v for k, v in sd.items()}})
    assert report.missing == ["stages.1.blocks.0.gamma"]
    assert report.unexpected == ["stages.1.blocks.0.extra_thing"]
    sd, _ = make_source("timm")
    sd["stages.0.blocks.0.mlp.fc1.weight"] = torch.zeros(5, 5)
    with pytest.raises(ValueError, match="expected shape"):
        load_convnext_weights(*_ours(), sd)
    with pytest.raises(ValueError, match="unrecognised ConvNeXt state dict"):
        load_convnext_weights(*_ours(), {"foo.weight": torch.zeros(1)})
    with pytest.raises(FileNotFoundError):
        load_convnext_weights(*_ours(), tmp_path / "nope.pth")


def test_conv_mlp_weights_are_reshaped():
    """Some timm checkpoints store the MLP as 1x1 convolutions (out, in, 1, 1)."""
    sd, canon = make_source("timm")
    for key in list(sd):
        if ".mlp.fc" in key and key.endswith("weight"):
            sd[key] = sd[key][:, :, None, None]
    enc, heads = _ours()
    report = load_convnext_weights(enc, heads, sd)
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(enc.stages[0].blocks[0].pwconv1.weight, canon[(0, 0, "fc1_w")])
