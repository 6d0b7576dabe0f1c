"""UnifyGeo: ground branch + aerial branch + localization decoder, and checkpoints.

Typical use::

    model = UnifyGeo(get_config("small")).eval()
    ground = model.encode_ground(pano)                 # dict: global, descriptors, valid
    aerial = model.encode_aerial(tiles)                # dict: global, features
    out = model.decode(ground, aerial, prior)          # D, yaw field, m0_max, alignment

``forward(ground_image, aerial_image, ...)`` runs all three on paired batches for training.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import nn

from ..inference.retrieval import alignment_descriptors
from ..model_config import ModelConfig, get_config, shipped_model_path  # noqa: F401  (shipped_model_path: re-exported)
from .branches import AerialBranch, GroundBranch
from .decoder import LocalizationDecoder
from .heading import known_heading_prior, subdivision_copies
from .released import (RELEASED_LAYOUT, RELEASED_TENSORS, from_released, is_released_layout,
                       released_payload)

CHECKPOINT_FORMAT = "unifygeo_ros/checkpoint/1"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class UnifyGeo(nn.Module):
    def __init__(self, cfg: ModelConfig | str):
        super().__init__()
        self.cfg = get_config(cfg)
        self.ground = GroundBranch(self.cfg)
        self.aerial = AerialBranch(self.cfg)
        self.decoder = LocalizationDecoder(self.cfg)
        init = math.log(1 / 0.07)
        # Learnable log inverse temperatures of the InfoNCE losses: retrieval, matching,
        # re-ranking, heading; with ``temperatures == 2`` (the released checkpoints) only
        # retrieval and re-ranking, L_M then has the fixed ``match_temperature``.
        self.logit_scale = nn.Parameter(torch.tensor(init))
        if self.cfg.temperatures == 4:
            self.logit_scale_match = nn.Parameter(torch.tensor(init))
        self.logit_scale_rerank = nn.Parameter(torch.tensor(init))
        if self.cfg.temperatures == 4:
            self.logit_scale_heading = nn.Parameter(torch.tensor(init))

    # ---- the three stages --------------------------------------------------------------------
    def encode_ground(self, image: torch.Tensor, column_mask: torch.Tensor | None = None,
                      subdivisions: bool = True) -> dict[str, torch.Tensor]:
        """Encode (B, 3, H, W) panoramas. With ``subdivisions`` the ``R`` sub-stride rotations
        needed by the full heading search are encoded too; without, R = 1 (as in training)."""
        b = image.shape[0]
        r = self.cfg.heading_subdivisions if subdivisions else 1
        if r > 1:
            image, column_mask = subdivision_copies(image, column_mask, self.cfg)
        v, *descs, valid, v_rolls = self.ground(image, column_mask)
        return {
            "global": v.view(b, r, -1)[:, 0],
            "global_alignments": alignment_descriptors(v_rolls.view(b, r, *v_rolls.shape[1:])),
            "descriptors": [d.view(b, r, *d.shape[1:]) for d in descs],
            "valid": valid.view(b, r, -1),
        }

    def encode_aerial(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        v, *features = self.aerial(image)
        return {"global": v, "features": features}

    def decode(self, ground: dict, aerial: dict, heading_logprior: torch.Tensor | None = None) -> dict:
        """Localize each ground query (B) in its aerial tile (B). The ground inputs must carry
        all R subdivisions when the prior allows alignments with r > 0."""
        descs, valid = ground["descriptors"], ground["valid"]
        b = valid.shape[0]
        if heading_logprior is None:
            heading_logprior = known_heading_prior(b, self.cfg).to(valid.device)
        r = descs[0].shape[1]
        if r != self.cfg.heading_subdivisions:
            # Only whole-column alignments are available: exclude the others.
            pad = self.cfg.heading_subdivisions
            keep = torch.zeros(self.cfg.heading_bins, dtype=torch.bool, device=valid.device)
            keep[::pad] = True
            heading_logprior = torch.where(keep, heading_logprior, torch.full_like(heading_logprior, -1e4))
            descs = [self._expand_subdivisions(d, pad) for d in descs]
            valid = self._expand_subdivisions(valid[:, :, None, :], pad).squeeze(2)
        return self.decoder(descs, valid, aerial["features"], heading_logprior)

    @staticmethod
    def _expand_subdivisions(t: torch.Tensor, r: int) -> torch.Tensor:
        return t.expand(t.shape[0], r, *t.shape[2:])

    def forward(self, ground_image, aerial_image, column_mask=None, heading_logprior=None) -> dict:
        """Training pass on paired batches (sample i's tile is aerial_image[i]). The ground
        global descriptor is taken at the prior's most likely alignment (the true one under
        teacher forcing), so that a descriptor with a layout term learns the aligned view."""
        ground = self.encode_ground(ground_image, column_mask, subdivisions=False)
        aerial = self.encode_aerial(aerial_image)
        out = self.decode(ground, aerial, heading_logprior)
        if heading_logprior is None:
            out["ground_global"] = ground["global"]
        else:
            # Without the sub-stride copies only whole-column alignments (multiples of R) exist.
            col = torch.div(torch.argmax(heading_logprior, dim=1), self.cfg.heading_subdivisions,
                            rounding_mode="floor")
            out["ground_global"] = ground["global_alignments"][torch.arange(col.shape[0], device=col.device), col]
        out["aerial_global"] = aerial["global"]
        return out

    # ---- temperatures -------------------------------------------------------------------------------
    def temperature_parameters(self) -> list[nn.Parameter]:
        """The learnable log inverse temperatures this configuration has."""
        names = ("logit_scale", "logit_scale_match", "logit_scale_rerank", "logit_scale_heading")
        return [getattr(self, n) for n in names if hasattr(self, n)]

    def match_logit_scale(self) -> torch.Tensor:
        """log(1 / temperature) of L_M: learnable, or the fixed ``match_temperature``."""
        if hasattr(self, "logit_scale_match"):
            return self.logit_scale_match
        return torch.tensor(math.log(1.0 / self.cfg.match_temperature), device=self.logit_scale.device)

    def heading_logit_scale(self) -> torch.Tensor:
        """log(1 / temperature) of the alignment scores (max M^0 cosines): the heading one, or
        without it the re-ranking one, which is trained on the same cosines (L_R)."""
        if hasattr(self, "logit_scale_heading"):
            return self.logit_scale_heading
        return self.logit_scale_rerank

    # ---- bookkeeping ------------------------------------------------------------------------------
    def yaw_head_parameters(self) -> int:
        head = self.decoder.yaw_head
        return sum(p.numel() for p in head.parameters()) if head is not None else 0

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def state_hash(self) -> str:
        """SHA-256 of the weights (names, shapes and bytes), independent of the file."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(name.encode())
            digest.update(str(tuple(t.shape)).encode())
            digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        return digest.hexdigest()


def save_checkpoint(model: UnifyGeo, path: str | Path, half: bool = False, **extra) -> None:
    """Write weights, configuration and ``extra`` metadata. ``half`` stores floating-point
    tensors as fp16 (half the size; loading casts them back to the model's fp32)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}   # whatever layout it trained in
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {"format": CHECKPOINT_FORMAT, "config": model.cfg.as_dict(), "state_dict": state,
               "dtype": "float16" if half else "float32", **extra}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


EXPECTED_FILES = (f"a unifygeo_ros checkpoint ({CHECKPOINT_FORMAT}) written by `unifygeo train`, or a "
                  f"state_dict in the layout of the authors' released VIGOR checkpoints ({RELEASED_LAYOUT}, "
                  f"{RELEASED_TENSORS} tensors such as grd_encoder.model.stem_0.weight)")


def _describe(payload) -> str:
    if not isinstance(payload, dict):
        return type(payload).__name__
    if "format" in payload:
        return f"format {str(payload.get('format'))[:80]!r}"
    keys = sorted(str(k) for k in payload)[:3]
    return f"a mapping of {len(payload)} entries ({', '.join(keys)}{', ...' if len(payload) > 3 else ''})"


def load_checkpoint(path: str | Path, map_location="cpu") -> tuple[UnifyGeo, dict]:
    """Load model weights; returns (model in eval mode, payload).

    Accepts a checkpoint written by :func:`save_checkpoint`, and a plain state dict in the
    layout of the authors' released VIGOR checkpoints (:mod:`.released`), which gives a
    ``vigor`` model and a payload with its ``sha256`` and ``released_as`` (the released
    file's name when the hash is one of theirs, else None). Both are loaded strictly.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:        # a truncated, foreign or non-torch file fails in many ways
        why = ("a damaged or truncated archive" if "zip archive" in str(exc)
               else f"not a file written by torch.save, {type(exc).__name__}")
        raise ValueError(f"{path}: not a readable checkpoint ({why}); expected {EXPECTED_FILES}") from exc
    if is_released_layout(payload):
        return _load_released(path, payload)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: expected {EXPECTED_FILES}; got {_describe(payload)}")
    try:
        cfg = get_config(payload["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the checkpoint's model configuration is unusable ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); expected a checkpoint written by `unifygeo train`") from exc
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state_dict of tensors in the checkpoint, got "
                         f"{type(state).__name__}")
    model = UnifyGeo(cfg)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shaped = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shaped:
        if shaped:
            example = (f"{shaped[0]} is {tuple(state[shaped[0]].shape)} where '{cfg.name}' has "
                       f"{tuple(expected[shaped[0]].shape)}")
        else:
            example = f"{(missing or unexpected)[0]} is {'missing' if missing else 'not in the model'}"
        raise ValueError(f"{path}: checkpoint does not match its model configuration '{cfg.name}' ({len(missing)} "
                         f"tensor(s) missing, {len(unexpected)} unexpected, {len(shaped)} of another shape; e.g. "
                         f"{example}); expected the weights of a '{cfg.name}' model, saved with its configuration")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinity (e.g. {bad[0]}); expected "
                         f"finite weights (a diverged training run?)")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: checkpoint does not match its model configuration '{cfg.name}' "
                         f"({' '.join(str(exc).split())[:200]})") from exc
    return model.eval(), payload


def _load_released(path: Path, state: dict) -> tuple[UnifyGeo, dict]:
    try:
        ours = from_released(state)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinity (e.g. {bad[0]}); expected "
                         f"finite weights")
    payload = released_payload(path)
    model = UnifyGeo(get_config(payload["config"]))
    model.load_state_dict(ours, strict=True)
    return model.eval(), payload
