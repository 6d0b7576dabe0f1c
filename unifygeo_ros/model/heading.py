"""Heading log-priors as torch tensors for the network, and its sub-stride copies.

The priors are those of :mod:`unifygeo_ros.inference.heading` (numpy, used at run time),
as tensors for the model's forward pass and training.
"""

from __future__ import annotations

import torch

from ..inference import heading as _np_heading
from ..inference.heading import EXCLUDED
from ..model_config import ModelConfig


def unknown_heading_prior(batch: int, cfg: ModelConfig) -> torch.Tensor:
    return torch.from_numpy(_np_heading.unknown_heading_prior(batch, cfg))


def known_heading_prior(batch: int, cfg: ModelConfig) -> torch.Tensor:
    return torch.from_numpy(_np_heading.known_heading_prior(batch, cfg))


def heading_window_prior(yaw_deg, half_width_deg: float, cfg: ModelConfig) -> torch.Tensor:
    return torch.from_numpy(_np_heading.heading_window_prior(yaw_deg, half_width_deg, cfg))


def teacher_prior(k_true: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """One-hot log-prior at the true alignments (training with teacher forcing)."""
    prior = torch.full((k_true.shape[0], cfg.heading_bins), EXCLUDED, device=k_true.device)
    prior.scatter_(1, k_true.view(-1, 1), 0.0)
    return prior


def subdivision_copies(image: torch.Tensor, column_mask: torch.Tensor | None, cfg: ModelConfig):
    """Stack the ``R`` sub-stride rotations of each panorama: copy ``r`` is rolled left by
    ``r * 32 / R`` pixels. Returns (B*R, 3, H, W) and the masks (B*R, W), batch-major."""
    r = cfg.heading_subdivisions
    step = cfg.stride // r
    copies = [torch.roll(image, shifts=-i * step, dims=-1) for i in range(r)]
    out = torch.stack(copies, dim=1).flatten(0, 1)
    if column_mask is None:
        return out, None
    masks = torch.stack([torch.roll(column_mask, shifts=-i * step, dims=-1) for i in range(r)], dim=1)
    return out, masks.flatten(0, 1)
