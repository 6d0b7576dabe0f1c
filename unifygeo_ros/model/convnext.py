"""ConvNeXt (Liu et al., 2022) written here, split the way UnifyGeo splits it.

UnifyGeo's multi-granularity encoder (paper, Sec. III-C and IV-C) uses ConvNeXt-Tiny:

* stages 1-3 form the *shared encoder* of a branch (:class:`ConvNeXtEncoder`), giving
  feature maps at strides 4, 8 and 16;
* stage 4 is duplicated into an *F-head* (fine-grained, detailed features F^0) and an
  *S-head* (semantic, features G for the aggregator) (:class:`ConvNeXtHead`), each keeping
  only the stage's down-sampling layer and one ConvNeXt block.

Ground panoramas wrap around horizontally. With ``circular_width=True`` the depth-wise
7x7 convolutions pad the width circularly (and the height with zeros); the stem and the
down-sampling layers are non-overlapping, so the encoder is then exactly equivariant to
circular rolls of the panorama by multiples of its total stride (32 px). The
unknown-heading search of the decoder relies on it.

ImageNet weights are loaded from a local state-dict file in the timm, original
(facebookresearch/ConvNeXt) or torchvision layout by :func:`load_convnext_weights`;
nothing is downloaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def pad_circular_width(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad an NCHW tensor by ``pad`` circularly along W and with zeros along H."""
    x = torch.cat([x[..., -pad:], x, x[..., :pad]], dim=-1)
    return F.pad(x, (0, 0, pad, pad))


class DropPath(nn.Module):
    """Stochastic depth per sample (identity at inference)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class ConvNeXtBlock(nn.Module):
    """Depth-wise 7x7 conv, LayerNorm, 4x MLP with GELU, layer scale, residual."""

    def __init__(self, dim: int, circular_width: bool = False, layer_scale_init: float = 1e-6,
                 drop_path: float = 0.0):
        super().__init__()
        self.circular_width = circular_width
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=0 if circular_width else 3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = pad_circular_width(x, 3) if self.circular_width else x
        if y.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN's bf16 depth-wise backward is 2-2.5x slower than fp32 on a CPU
            # (measured with AMX, torch 2.13): this convolution stays fp32 under autocast.
            with torch.autocast("cpu", enabled=False):
                y = self.dwconv(y.float())
        else:
            y = self.dwconv(y)
        y = y.permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        y = (self.gamma * y).permute(0, 3, 1, 2)
        return x + self.drop_path(y)


class Downsample(nn.Sequential):
    """LayerNorm then a 2x2 stride-2 convolution (ConvNeXt's between-stage layer)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm = LayerNorm2d(in_dim, eps=1e-6)
        self.conv = nn.Conv2d(in_dim, out_dim, 2, stride=2)


class Stem(nn.Sequential):
    """4x4 stride-4 patchify convolution then LayerNorm."""

    def __init__(self, out_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(3, out_dim, 4, stride=4)
        self.norm = LayerNorm2d(out_dim, eps=1e-6)


class Stage(nn.Module):
    def __init__(self, in_dim: int, dim: int, depth: int, downsample: bool, circular_width: bool,
                 drop_paths: Iterable[float]):
        super().__init__()
        self.downsample = Downsample(in_dim, dim) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[ConvNeXtBlock(dim, circular_width, drop_path=p) for p in drop_paths])
        assert len(self.blocks) == depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXtEncoder(nn.Module):
    """Stem and stages 1-3: the shared encoder of one branch.

    Returns the three stage outputs, at strides 4, 8 and 16, with ``dims[0..2]`` channels.
    """

    def __init__(self, dims: tuple[int, ...], depths: tuple[int, ...], circular_width: bool = False,
                 drop_path: float = 0.0):
        super().__init__()
        self.stem = Stem(dims[0])
        total = sum(depths)
        rates = [drop_path * i / max(total - 1, 1) for i in range(total)]
        stages, start = [], 0
        for i in range(3):
            stages.append(Stage(dims[i - 1] if i else dims[0], dims[i], depths[i], downsample=i > 0,
                                circular_width=circular_width, drop_paths=rates[start:start + depths[i]]))
            start += depths[i]
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class ConvNeXtHead(Stage):
    """Stage 4 reduced to its down-sampling layer and ``blocks`` ConvNeXt blocks (F- or S-head)."""

    def __init__(self, in_dim: int, dim: int, blocks: int = 1, circular_width: bool = False,
                 drop_path: float = 0.0):
        super().__init__(in_dim, dim, blocks, downsample=True, circular_width=circular_width,
                         drop_paths=[drop_path] * blocks)


# ----------------------------------------------------------------------------------------
# ImageNet weights from a local file
# ----------------------------------------------------------------------------------------

@dataclass
class WeightLoadReport:
    """What :func:`load_convnext_weights` did. ``missing``: our tensors left at their
    initial values; ``unexpected``: source tensors that mapped to nothing; ``ignored``:
    source tensors deliberately unused (the ImageNet classifier, stage-4 blocks beyond
    the heads' first)."""

    source_format: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"source_format": self.source_format, "loaded": self.loaded, "missing": self.missing,
                "unexpected": self.unexpected, "ignored_count": len(self.ignored)}


_WRAPPER_KEYS = ("state_dict", "model", "model_ema", "module")
_PREFIXES = ("module.", "model.", "backbone.", "encoder.")


def _unwrap(obj) -> dict[str, torch.Tensor]:
    while isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _WRAPPER_KEYS:
            if key in obj:
                obj = obj[key]
                break
        else:
            raise ValueError("expected a ConvNeXt state dict (a mapping of tensor names to tensors), "
                             f"found a mapping with keys {sorted(obj)[:8]}")
    if not isinstance(obj, dict):
        raise ValueError(f"expected a ConvNeXt state dict, found {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _detect_format(keys: Iterable[str]) -> str:
    keys = list(keys)
    if any(k.startswith("features.") for k in keys):
        return "torchvision"
    if any(k.startswith("downsample_layers.") for k in keys):
        return "facebook"
    if any(k.startswith("stem.0.") or ".conv_dw." in k for k in keys):
        return "timm"
    raise ValueError("unrecognised ConvNeXt state dict: expected timm keys (stem.0.*, stages.N.blocks.M.conv_dw.*), "
                     "facebookresearch keys (downsample_layers.*, stages.N.M.dwconv.*) or torchvision keys "
                     f"(features.*); first keys are {keys[:5]}")


_BLOCK_PARTS = {
    # canonical -> (timm, facebook, torchvision) suffix
    "dwconv.weight": ("conv_dw.weight", "dwconv.weight", "block.0.weight"),
    "dwconv.bias": ("conv_dw.bias", "dwconv.bias", "block.0.bias"),
    "norm.weight": ("norm.weight", "norm.weight", "block.2.weight"),
    "norm.bias": ("norm.bias", "norm.bias", "block.2.bias"),
    "pwconv1.weight": ("mlp.fc1.weight", "pwconv1.weight", "block.3.weight"),
    "pwconv1.bias": ("mlp.fc1.bias", "pwconv1.bias", "block.3.bias"),
    "pwconv2.weight": ("mlp.fc2.weight", "pwconv2.weight", "block.5.weight"),
    "pwconv2.bias": ("mlp.fc2.bias", "pwconv2.bias", "block.5.bias"),
    "gamma": ("gamma", "gamma", "layer_scale"),
}
_FORMAT_INDEX = {"timm": 0, "facebook": 1, "torchvision": 2}


def _source_name(fmt: str, stage: int, what: str, block: int | None = None, part: str = "") -> str:
    """Name of a canonical ConvNeXt tensor in the source layout ``fmt``.

    ``what`` is 'stem.conv', 'stem.norm', 'down.norm', 'down.conv' or 'block'.
    """
    if what.startswith("stem"):
        idx = {"stem.conv": 0, "stem.norm": 1}[what]
        return {"timm": f"stem.{idx}.{part}", "facebook": f"downsample_layers.0.{idx}.{part}",
                "torchvision": f"features.0.{idx}.{part}"}[fmt]
    if what.startswith("down"):
        idx = {"down.norm": 0, "down.conv": 1}[what]
        return {"timm": f"stages.{stage}.downsample.{idx}.{part}",
                "facebook": f"downsample_layers.{stage}.{idx}.{part}",
                "torchvision": f"features.{2 * stage}.{idx}.{part}"}[fmt]
    suffix = _BLOCK_PARTS[part][_FORMAT_INDEX[fmt]]
    return {"timm": f"stages.{stage}.blocks.{block}.{suffix}", "facebook": f"stages.{stage}.{block}.{suffix}",
            "torchvision": f"features.{2 * stage + 1}.{block}.{suffix}"}[fmt]


def _canonical_targets(encoder: ConvNeXtEncoder, heads: list[ConvNeXtHead]):
    """Yield (our parameter, source-layout spec) pairs for every tensor we can fill."""
    for part in ("weight", "bias"):
        yield getattr(encoder.stem.conv, part), ("stem.conv", 0, None, part)
        yield getattr(encoder.stem.norm, part), ("stem.norm", 0, None, part)
    stage_modules: list[tuple[int, Stage]] = list(enumerate(encoder.stages)) + [(3, h) for h in heads]
    for stage_idx, stage in stage_modules:
        if isinstance(stage.downsample, Downsample):
            for part in ("weight", "bias"):
                yield getattr(stage.downsample.norm, part), ("down.norm", stage_idx, None, part)
                yield getattr(stage.downsample.conv, part), ("down.conv", stage_idx, None, part)
        for b, block in enumerate(stage.blocks):
            for canon in _BLOCK_PARTS:
                mod_name, _, attr = canon.rpartition(".")
                tensor = getattr(getattr(block, mod_name), attr) if mod_name else getattr(block, attr)
                yield tensor, ("block", stage_idx, b, canon)


def load_convnext_weights(encoder: ConvNeXtEncoder, heads: list[ConvNeXtHead],
                          source: str | Path | dict) -> WeightLoadReport:
    """Load ImageNet ConvNeXt weights into a shared encoder and its stage-4 heads.

    ``source`` is a path to a ``torch.save``/``.pth``/``.pt`` file (or an already loaded
    dict) in the timm, facebookresearch or torchvision layout; wrappers such as
    ``{"model": ...}`` and prefixes such as ``module.`` are removed. Every head receives
    stage 4's down-sampling layer and its first blocks. Shapes must match (a
    ConvNeXt-Tiny file for ConvNeXt-Tiny dimensions): a mismatch raises ValueError.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"ConvNeXt weight file not found: {path}")
        if path.suffix == ".safetensors":
            raise ValueError(f"{path}: expected a PyTorch state-dict file (.pth/.pt/.bin); convert "
                             ".safetensors with safetensors.torch.load_file + torch.save first")
        source = torch.load(path, map_location="cpu", weights_only=True)
    state = _unwrap(source)
    fmt = _detect_format(state.keys())
    report = WeightLoadReport(source_format=fmt)
    used: set[str] = set()
    with torch.no_grad():
        for tensor, (what, stage, block, part) in _canonical_targets(encoder, heads):
            name = _source_name(fmt, stage, what, block, part)
            if name not in state:
                report.missing.append(name)
                continue
            value = state[name]
            if value.numel() == tensor.numel() and value.shape != tensor.shape:
                value = value.reshape(tensor.shape)  # 1x1-conv MLPs, torchvision (C,1,1) layer scale
            if value.shape != tensor.shape:
                raise ValueError(f"{name}: expected shape {tuple(tensor.shape)} for this configuration, "
                                 f"found {tuple(value.shape)} (is the file a different ConvNeXt size?)")
            tensor.copy_(value.to(tensor.dtype))
            used.add(name)
            report.loaded += 1
    classifier = re.compile(r"^(head|classifier|norm)\.|^head$|^norm_pre\.")
    stage4 = {"timm": r"^stages\.3\.", "facebook": r"^(stages\.3\.|downsample_layers\.3\.)",
              "torchvision": r"^features\.(6|7)\."}[fmt]
    for key in state:
        if key in used:
            continue
        if classifier.search(key) or re.search(stage4, key):
            report.ignored.append(key)
        else:
            report.unexpected.append(key)
    return report
