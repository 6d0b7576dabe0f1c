"""The three deployable modules, with tensor-only inputs and outputs, and their ONNX export.

* ground branch:  image (B,3,H,W), column_mask (B,W)
                  -> global_descriptor (B,D), ground_desc0..3 (B,c_l,W'), column_valid (B,W'),
                     global_rolls (B,W',D) (the descriptor of the panorama turned by s columns)
* aerial branch:  image (B,3,L,L)
                  -> global_descriptor (B,D), aerial_feat0..3 (B,C_l,h_l,h_l)
* decoder:        ground_desc0..3 (B,R,c_l,W'), column_valid (B,R,W'), aerial_feat0..3,
                  heading_logprior (B,K)
                  -> D (B,L,L), yaw_field (B,2,L,L) (unnormalised: its angle is the yaw), m0_max (B,), match_score (B,),
                     alignment_scores (B,K),
                     alignment (B,) int64

Every batch dimension is dynamic. The ground branch runs on the ``R`` sub-stride copies
of a panorama as a batch (see :mod:`.heading`); the caller reshapes them to (B, R, ...).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..model.unifygeo import UnifyGeo
from ..onnx_names import (
    AERIAL_INPUTS,
    AERIAL_OUTPUTS,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    FILES,
    GROUND_INPUTS,
    GROUND_OUTPUTS,
    ONNX_FORMAT,
)
from .ort_session import make_session

ONNX_OPSET = 17


def decoder_outputs(model: UnifyGeo) -> list[str]:
    return [n for n in DECODER_OUTPUTS if model.cfg.yaw_head or n != "yaw_field"]


class GroundBranchModule(nn.Module):
    def __init__(self, model: UnifyGeo):
        super().__init__()
        self.branch = model.ground

    def forward(self, image: torch.Tensor, column_mask: torch.Tensor):
        return self.branch(image, column_mask)


class AerialBranchModule(nn.Module):
    def __init__(self, model: UnifyGeo):
        super().__init__()
        self.branch = model.aerial

    def forward(self, image: torch.Tensor):
        return self.branch(image)


class DecoderModule(nn.Module):
    def __init__(self, model: UnifyGeo):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, g0, g1, g2, g3, valid, a0, a1, a2, a3, heading_logprior):
        out = self.decoder([g0, g1, g2, g3], valid, [a0, a1, a2, a3], heading_logprior)
        result = [out["D"]]
        if "yaw_field" in out:
            result.append(out["yaw_field"])
        return (*result, out["m0_max"], out["match_score"], out["shift_scores"], out["shift"])


def example_inputs(model: UnifyGeo, batch: int = 1, seed: int = 0) -> dict[str, tuple[torch.Tensor, ...]]:
    """Realistic example inputs for the three modules (decoder inputs come from the branches)."""
    cfg = model.cfg
    gen = torch.Generator().manual_seed(seed)
    h, w = cfg.ground_size
    r = cfg.heading_subdivisions
    ground_img = torch.randn(batch * r, 3, h, w, generator=gen)
    mask = torch.ones(batch * r, w)
    aerial_img = torch.randn(batch, 3, cfg.aerial_size, cfg.aerial_size, generator=gen)
    with torch.no_grad():
        _, *descs, valid, _ = model.ground(ground_img, mask)
        _, *feats = model.aerial(aerial_img)
    descs = [d.view(batch, r, *d.shape[1:]) for d in descs]
    valid = valid.view(batch, r, -1)
    prior = torch.zeros(batch, cfg.heading_bins)
    return {"ground": (ground_img, mask), "aerial": (aerial_img,),
            "decoder": (*descs, valid, *feats, prior)}


def export_onnx(model: UnifyGeo, out_dir: str | Path, opset: int = ONNX_OPSET) -> dict[str, Path]:
    """Write the three ONNX files and ``manifest.json`` into ``out_dir``; return their paths."""
    if opset < 17:
        raise ValueError(f"ONNX opset must be 17 or newer (LayerNormalization), got {opset}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    inputs = example_inputs(model, batch=2)
    specs = {
        "ground": (GroundBranchModule(model), GROUND_INPUTS, GROUND_OUTPUTS),
        "aerial": (AerialBranchModule(model), AERIAL_INPUTS, AERIAL_OUTPUTS),
        "decoder": (DecoderModule(model), DECODER_INPUTS, decoder_outputs(model)),
    }
    paths = {}
    for key, (module, in_names, out_names) in specs.items():
        dynamic = {name: {0: "batch"} for name in in_names + out_names}
        path = out_dir / FILES[key]
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")   # legacy-exporter deprecation and tracer notices
            torch.onnx.export(module, inputs[key], str(path), dynamo=False, opset_version=opset,
                              input_names=in_names, output_names=out_names, dynamic_axes=dynamic,
                              do_constant_folding=True)
        paths[key] = path
    manifest = {
        "format": ONNX_FORMAT,
        "model_hash": model.state_hash(),
        "config": model.cfg.as_dict(),
        "opset": opset,
        "files": {k: p.name for k, p in paths.items()},
        "inputs": {k: v[1] for k, v in specs.items()},
        "outputs": {k: v[2] for k, v in specs.items()},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return paths


def onnx_parity(model: UnifyGeo, paths: dict[str, Path], batch: int = 1, seed: int = 1) -> dict[str, float]:
    """Max abs difference between PyTorch and ONNX Runtime (CPU, fp32) on every output.

    Also reports ``D_max_rel``: the largest difference of D relative to D's peak value,
    since D's values are tiny (they sum to 1 over L*L pixels)."""
    model = model.eval()
    inputs = example_inputs(model, batch=batch, seed=seed)
    modules = {"ground": GroundBranchModule(model), "aerial": AerialBranchModule(model),
               "decoder": DecoderModule(model)}
    names = {"ground": GROUND_OUTPUTS, "aerial": AERIAL_OUTPUTS, "decoder": decoder_outputs(model)}
    diffs: dict[str, float] = {}
    for key, module in modules.items():
        with torch.no_grad():
            ref = [t.numpy() for t in module(*inputs[key])]
        sess = make_session(paths[key])
        feed = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs[key])}
        got = sess.run(None, feed)
        for name, r, g in zip(names[key], ref, got):
            if r.shape != g.shape:
                raise AssertionError(f"{key}/{name}: ONNX shape {g.shape} != PyTorch shape {r.shape}")
            diffs[f"{key}/{name}"] = float(np.abs(r.astype(np.float64) - g.astype(np.float64)).max())
            if name == "D":
                diffs["decoder/D_max_rel"] = diffs["decoder/D"] / float(r.max())
    return diffs
