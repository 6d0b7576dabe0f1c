"""The authors' released VIGOR checkpoints: their tensor names, recognition, loading.

The UnifyGeo authors publish two trained models (github.com/chord-sz/UnifyGeo,
``checkpoints/SHA256SUMS``): ``unifygeo_vigor_same_area.pth`` and
``unifygeo_vigor_cross_area.pth``. Each is a plain PyTorch ``state_dict`` (no wrapper, no
configuration) of 457 tensors and 57,700,330 values, for the network of the ``vigor``
configuration. Their modules are named after their code (``grd_encoder.model.stem_0``,
``pyramid_decoder.deconv4``, ...); ours are not, so :func:`released_name` maps each of our
tensor names to theirs, and :func:`to_released` / :func:`from_released` convert whole
state dicts. A few tensors change shape on the way: their 1x1 convolutions are our linear
layers (``(out, in, 1, 1)`` <-> ``(out, in)``), and the column-wise fully connected layer
of each ground projector is a ``Conv2d(H', 1, 1)`` there (``(1, H', 1, 1)`` <-> ``(1, H')``).

A file in that layout is accepted wherever a unifygeo_ros checkpoint is
(:func:`unifygeo_ros.model.unifygeo.load_checkpoint`): it is loaded strictly (every tensor
present, none extra, every shape right) into a ``vigor`` model, and recognised by its
SHA-256 when it is one of the two released files.

No released weights are needed to test any of this: :func:`released_state_dict` draws a
complete state dict in their layout from a seed (the forward-parity reference in
``test/data/released_parity/`` was made from it, see the README there).
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import torch

from ..model_config import get_config
from .branches import AerialBranch, GroundBranch
from .decoder import LocalizationDecoder

#: The ``vigor`` configuration, whose state dict is the released checkpoints' (renamed).
RELEASED_CONFIG = "vigor"
#: What the authors' evaluator checks after its strict load.
RELEASED_TENSORS = 457
RELEASED_VALUES = 57_700_330
#: How a file in the authors' layout is described in reports and payloads.
RELEASED_LAYOUT = "chord-sz/UnifyGeo state_dict"

#: SHA-256 of the released files (the authors' checkpoints/SHA256SUMS) -> file name, protocol.
RELEASED_FILES = {
    "6443775bd39a84eb4dca04ed5db206be57a8a8fbac6e36a6c045da00a60025ff": ("unifygeo_vigor_same_area.pth", "same_area"),
    "71175956671df210c76a830e4962730188bf0148938e597ef2641945d75cd79d": ("unifygeo_vigor_cross_area.pth", "cross_area"),
}

# Aerial metres per pixel the released models were trained at: VIGOR's 640 px tiles
# (per-city m/px as in unifygeo_ros.data.vigor.VIGOR_MPP_640) resized to 384 px, averaged
# over the protocol's training cities.
_VIGOR_MPP_640 = {"NewYork": 0.113248, "Seattle": 0.100817, "SanFrancisco": 0.118141, "Chicago": 0.111262}
_TRAIN_CITIES = {"same_area": ("NewYork", "Seattle", "SanFrancisco", "Chicago"),
                 "cross_area": ("NewYork", "Seattle")}


def released_aerial_mpp(protocol: str, aerial_size: int = 384) -> float:
    cities = _TRAIN_CITIES[protocol]
    return sum(_VIGOR_MPP_640[c] for c in cities) / len(cities) * 640.0 / aerial_size


# ---- names ---------------------------------------------------------------------------------

_BLOCK_PART = {"dwconv": "conv_dw", "norm": "norm", "pwconv1": "mlp.fc1", "pwconv2": "mlp.fc2"}
_BRANCH = {"ground": "grd", "aerial": "sat"}
_HEAD = {"f_head": "local_feats_decoder", "s_head": "global_feats_decoder"}
_AGGREGATOR = {"to_q": "block.f.0", "q_norm": "block.f.1", "to_k": "block.g.0", "k_norm": "block.g.1",
               "to_v": "block.h", "restore": "block.v"}
#: Our tensors stored with trailing 1x1 dimensions in the released layout.
_CONV_1X1 = re.compile(r"^(ground|aerial)\.aggregator\.(to_q|to_k|to_v|restore)\.weight$"
                       r"|^ground\.projectors\.\d\.column_fc\.weight$")


def _block_part(part: str) -> str:
    head, _, tail = part.partition(".")
    return f"{_BLOCK_PART[head]}.{tail}" if tail else _BLOCK_PART.get(head, head)


def _downsample_or_block(prefix: str, rest: str, blocks_as) -> str | None:
    """A ConvNeXt stage's ``downsample.(norm|conv)`` or ``blocks.K.<part>`` tensor under the
    released ``prefix``; ``blocks_as(K)`` names block K there (``None``: no counterpart)."""
    down = re.fullmatch(r"downsample\.(norm|conv)\.(weight|bias)", rest)
    if down:
        return f"{prefix}.downsample.{0 if down.group(1) == 'norm' else 1}.{down.group(2)}"
    block = re.fullmatch(r"blocks\.(\d+)\.(.+)", rest)
    if block and blocks_as(block.group(1)) is not None:
        return f"{prefix}.{blocks_as(block.group(1))}.{_block_part(block.group(2))}"
    return None


def released_name(name: str) -> str:
    """The released checkpoints' name of our ``vigor`` tensor ``name`` (KeyError if none)."""
    m = re.fullmatch(r"logit_scale|logit_scale_rerank", name)
    if m:
        return name
    m = re.fullmatch(r"(ground|aerial)\.(.+)", name)
    if m:
        side, rest = _BRANCH[m.group(1)], m.group(2)
        enc = re.fullmatch(r"encoder\.(.+)", rest)
        if enc:
            r = enc.group(1)
            stem = re.fullmatch(r"stem\.(conv|norm)\.(weight|bias)", r)
            if stem:
                return f"{side}_encoder.model.stem_{0 if stem.group(1) == 'conv' else 1}.{stem.group(2)}"
            stage = re.fullmatch(r"stages\.(\d)\.(.+)", r)
            if stage:
                found = _downsample_or_block(f"{side}_encoder.model.stages_{stage.group(1)}", stage.group(2),
                                             lambda k: f"blocks.{k}")
                if found:
                    return found
        head = re.fullmatch(r"(f_head|s_head)\.(.+)", rest)
        if head:
            found = _downsample_or_block(f"{side}_{_HEAD[head.group(1)]}.model", head.group(2),
                                         lambda k: "conv" if k == "0" else None)
            if found:
                return found
        agg = re.fullmatch(r"aggregator\.(.+)", rest)
        if agg:
            prefix, r = f"{side}_global_feats_decoder", agg.group(1)
            if r == "p":
                return f"{prefix}.aggregator.gem.p"
            post = re.fullmatch(r"post_norm\.(weight|bias)", r)
            if post:
                return f"{prefix}.agg_post_norm.{post.group(1)}"
            part = re.fullmatch(r"(to_q|q_norm|to_k|k_norm|to_v|restore)\.(weight|bias)", r)
            if part:
                return f"{prefix}.aggregator.{_AGGREGATOR[part.group(1)]}.{part.group(2)}"
        proj = re.fullmatch(r"projectors\.(\d)\.(reduce|column_fc)\.(weight|bias)", rest)
        if proj and side == "grd":
            conv = "conv1" if proj.group(2) == "reduce" else "conv2"
            return f"pyramid_decoder.grd_feature_to_descriptor{int(proj.group(1)) + 1}.{conv}.{proj.group(3)}"
    m = re.fullmatch(r"decoder\.(ground_norms|aerial_norms|upsample|fuse)\.(\d)\.(.+)", name)
    if m:
        kind, i, rest = m.group(1), int(m.group(2)), m.group(3)
        if kind == "ground_norms":
            return f"pyramid_decoder.grd_descriptor_norm{i + 1}.{rest}"
        if kind == "aerial_norms":
            return f"pyramid_decoder.sat_matching_block_norm{i + 1}.{rest}"
        return f"pyramid_decoder.{'deconv' if kind == 'upsample' else 'conv'}{4 - i}.{rest}"
    m = re.fullmatch(r"decoder\.(final_upsample|to_logits)\.(.+)", name)
    if m:
        return f"pyramid_decoder.{'deconv1' if m.group(1) == 'final_upsample' else 'conv1'}.{m.group(2)}"
    raise KeyError(f"{name} has no counterpart in the released checkpoints")


def _released_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*shape, 1, 1) if _CONV_1X1.match(name) else shape


def _vigor_state_shapes() -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Our ``vigor`` state dict's names, shapes and dtypes: those of :class:`.unifygeo.UnifyGeo`
    (its two temperatures, then its three parts), built on the meta device (no memory)."""
    cfg = get_config(RELEASED_CONFIG)
    out: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
        "logit_scale": ((), torch.float32), "logit_scale_rerank": ((), torch.float32)}
    with torch.device("meta"):
        parts = {"ground": GroundBranch(cfg), "aerial": AerialBranch(cfg), "decoder": LocalizationDecoder(cfg)}
    for prefix, module in parts.items():
        out.update({f"{prefix}.{k}": (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()})
    return out


def released_layout() -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The released checkpoints' tensor names -> (shape, dtype), in our state dict's order."""
    return {released_name(k): (_released_shape(k, s), d) for k, (s, d) in _vigor_state_shapes().items()}


def to_released(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our ``vigor`` state dict -> the same tensors under the released checkpoints' names and shapes."""
    return {released_name(k): v.reshape(_released_shape(k, tuple(v.shape))) for k, v in state.items()}


def is_released_layout(obj) -> bool:
    """Whether ``obj`` looks like a state dict in the authors' layout (not whether it is complete)."""
    return (isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values())
            and any(k.startswith(("grd_encoder.model.", "sat_encoder.model.", "pyramid_decoder.")) for k in obj))


def from_released(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict in the authors' layout -> our ``vigor`` state dict. Strict: raises
    ValueError naming the first missing, extra or wrongly shaped tensor (in their names)."""
    ours = _vigor_state_shapes()
    names = {released_name(k): k for k in ours}
    missing = [n for n in names if n not in state]
    extra = [n for n in state if n not in names]
    shaped = [n for n in names if n in state
              and tuple(state[n].shape) != _released_shape(names[n], ours[names[n]][0])]
    if missing or extra or shaped:
        if shaped:
            n = shaped[0]
            example = (f"{n} is {tuple(state[n].shape)}, expected "
                       f"{_released_shape(names[n], ours[names[n]][0])}")
        elif missing:
            example = f"{missing[0]} is missing"
        else:
            example = f"{extra[0]} is not in the released network"
        raise ValueError(f"not the released UnifyGeo VIGOR network: {len(missing)} tensor(s) missing, "
                         f"{len(extra)} extra, {len(shaped)} of another shape (e.g. {example}); expected "
                         f"the {RELEASED_TENSORS} tensors of {RELEASED_LAYOUT}")
    return {k: state[n].reshape(ours[k][0]) for n, k in names.items()}


# ---- files ---------------------------------------------------------------------------------

def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def released_payload(path: str | Path) -> dict:
    """What is known about a file in the authors' layout: its SHA-256, which released file it
    is (``released_as``, None for another file in that layout) and the training data."""
    digest = sha256_file(path)
    released_as, protocol = RELEASED_FILES.get(digest, (None, None))
    training: dict = {"aerial_mpp": released_aerial_mpp(protocol or "same_area")}
    if protocol:
        training["data"] = f"VIGOR {protocol.replace('_', '-')} (the authors' training)"
    return {"format": RELEASED_LAYOUT, "config": get_config(RELEASED_CONFIG).as_dict(), "sha256": digest,
            "released_as": released_as, "training": training}


# ---- a seeded stand-in -----------------------------------------------------------------------

def released_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A complete state dict in the authors' layout with values drawn from ``seed``.

    The values are chosen to keep activations in a trained network's range (unit-variance
    weights per fan-in, LayerNorm and BatchNorm scales near 1, layer scales 0.05-0.5,
    running variances 0.5-1.5, a final convolution that makes D peaked), so that every path
    of the network, attention and soft-max included, produces informative numbers.
    Deterministic for a given torch version.
    """
    gen = torch.Generator().manual_seed(int(seed))
    out: dict[str, torch.Tensor] = {}
    for name, (shape, dtype) in sorted(released_layout().items()):
        leaf = name.rsplit(".", 1)[-1]
        if dtype == torch.int64:                                         # num_batches_tracked
            out[name] = torch.tensor(1000 + int(torch.randint(0, 1000, (), generator=gen)), dtype=torch.int64)
            continue
        randn = torch.randn(shape, generator=gen)
        rand = torch.rand(shape, generator=gen)
        if name.startswith("logit_scale"):
            value = math.log(1 / 0.07) + 0.5 * randn
        elif leaf == "p":
            value = 3.0 + 0.2 * randn
        elif leaf == "gamma":
            value = 0.05 + 0.45 * rand
        elif leaf == "running_mean":
            value = 0.1 * randn
        elif leaf == "running_var":
            value = 0.5 + rand
        elif len(shape) == 1 and leaf == "weight":                      # a LayerNorm or BatchNorm scale
            value = 1.0 + 0.1 * randn
        elif leaf == "bias":
            value = 0.05 * randn
        else:                                                           # conv / linear weights
            # A stride-2 2x2 transposed convolution gives each output pixel one tap per input channel.
            fan_in = shape[0] if "deconv" in name else math.prod(shape[1:])
            value = randn / math.sqrt(fan_in)
            if name == "pyramid_decoder.conv1.3.weight":
                value = 20.0 * value          # logits spanning several units: a peaked D, as trained
        out[name] = value.to(dtype).contiguous()
    return out


def released_parity_inputs(seed: int = 0, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (ground panoramas, aerial tiles) at the ``vigor`` sizes, for comparing forward
    passes: smooth colour fields plus pixel noise, in the range of ImageNet-normalised images."""
    cfg = get_config(RELEASED_CONFIG)
    gen = torch.Generator().manual_seed(int(seed))
    h, w = cfg.ground_size
    size = cfg.aerial_size

    def image(rows: int, cols: int) -> torch.Tensor:
        coarse = torch.randn(batch, 3, rows // 32, cols // 32, generator=gen)
        smooth = torch.nn.functional.interpolate(coarse, size=(rows, cols), mode="bilinear", align_corners=False)
        return smooth + 0.3 * torch.randn(batch, 3, rows, cols, generator=gen)

    return image(h, w), image(size, size)
