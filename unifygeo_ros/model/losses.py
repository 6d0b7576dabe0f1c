"""UnifyGeo's multi-task loss (paper Eq. 5-8) plus the yaw loss.

    L = w_D L_D + w_G L_G + w_M L_M + w_R L_R + w_yaw L_yaw,   paper: 1, 100, 10, 1 (+ ours for yaw)

* L_D: cross-entropy of D against D_gt, a Gaussian-smoothed one-hot over the L x L pixels.
* L_G: symmetric InfoNCE on the global descriptors, learnable temperature, label smoothing.
* L_M: per level, InfoNCE over the aerial cells with cosine scores M^l, weighted by D_gt
  max-pooled to the level's resolution and renormalised; summed over levels.
* L_R: f_g^0 against F_a^0 of *every* aerial image in the mini-batch (re-ranking loss).
* L_yaw (beyond the paper): the normalised (cos, sin) field's squared error to the target yaw,
  weighted by D_gt (only pixels near the truth are supervised, as in CCVPE), plus a
  cross-entropy over the decoder's alignment scores with the true alignment as target.

Location labels are continuous pixel coordinates ``(row, col)`` in the L x L tile; pixel
``(i, j)`` covers ``[i, i+1) x [j, j+1)``, so its centre is ``(i + 0.5, j + 0.5)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .ops import l2_normalize


@dataclass(frozen=True)
class LossConfig:
    weight_d: float = 1.0
    weight_g: float = 100.0
    weight_m: float = 10.0
    weight_r: float = 1.0
    weight_yaw: float = 1.0
    label_smoothing: float = 0.1
    sigma_px: float | None = None      # Gaussian of D_gt; default L / 96 (4 px at L = 384)
    heading_term: float = 1.0          # weight of the alignment cross-entropy inside L_yaw

    def as_dict(self) -> dict:
        return asdict(self)


def gaussian_target(rows: torch.Tensor, cols: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """D_gt: (B, size, size) Gaussians at continuous pixel coordinates, each summing to 1."""
    centres = torch.arange(size, dtype=torch.float32, device=rows.device) + 0.5
    gr = torch.exp(-0.5 * ((centres[None, :] - rows[:, None].float()) / sigma) ** 2)
    gc = torch.exp(-0.5 * ((centres[None, :] - cols[:, None].float()) / sigma) ** 2)
    d = gr[:, :, None] * gc[:, None, :]
    return d / d.sum(dim=(1, 2), keepdim=True).clamp(min=1e-12)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum target * log_softmax(logits) (last dim)."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def loss_d(logits: torch.Tensor, d_gt: torch.Tensor) -> torch.Tensor:
    return soft_cross_entropy(logits, d_gt.flatten(1))


def loss_g(v_g: torch.Tensor, v_a: torch.Tensor, logit_scale: torch.Tensor, smoothing: float) -> torch.Tensor:
    logits = logit_scale.exp() * v_g @ v_a.t()
    labels = torch.arange(v_g.shape[0], device=v_g.device)
    return 0.5 * (F.cross_entropy(logits, labels, label_smoothing=smoothing)
                  + F.cross_entropy(logits.t(), labels, label_smoothing=smoothing))


def level_weights(d_gt: torch.Tensor, cells: int) -> torch.Tensor:
    """w_l: D_gt max-pooled to ``cells x cells`` and renormalised, flattened (B, cells^2)."""
    k = d_gt.shape[-1] // cells
    w = F.max_pool2d(d_gt[:, None], kernel_size=k).flatten(1)
    return w / w.sum(dim=1, keepdim=True).clamp(min=1e-12)


def loss_m(matching: list[torch.Tensor], d_gt: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    total = d_gt.new_zeros(())
    for m in matching:
        total = total + soft_cross_entropy(logit_scale.exp() * m.flatten(1), level_weights(d_gt, m.shape[-1]))
    return total


def loss_r(ground_desc0: torch.Tensor, aerial_desc0: torch.Tensor, d_gt: torch.Tensor,
           logit_scale: torch.Tensor) -> torch.Tensor:
    """``ground_desc0`` (B, C) and ``aerial_desc0`` (B, C, N) are normalised level-0 descriptors."""
    b, _, n = aerial_desc0.shape
    logits = logit_scale.exp() * torch.einsum("bc,acn->ban", ground_desc0, aerial_desc0).reshape(b, b * n)
    target = torch.zeros_like(logits).view(b, b, n)
    idx = torch.arange(b, device=logits.device)
    target[idx, idx] = level_weights(d_gt, int(round(n ** 0.5)))
    return soft_cross_entropy(logits, target.view(b, b * n))


def loss_yaw(yaw_field: torch.Tensor, d_gt: torch.Tensor, field_yaw_deg: torch.Tensor,
             shift_scores: torch.Tensor, k_true: torch.Tensor, logit_scale: torch.Tensor,
             heading_term: float, smoothing: float, bin_stride: int = 1) -> torch.Tensor:
    """Field term + alignment term. ``bin_stride`` = R when the batch was encoded without the
    sub-stride copies: only every R-th alignment is a distinct candidate then."""
    rad = torch.deg2rad(field_yaw_deg.float())
    target = torch.stack([torch.cos(rad), torch.sin(rad)], dim=1)[:, :, None, None]
    field = l2_normalize(yaw_field, dim=1)
    field_term = (d_gt[:, None] * (field - target) ** 2).sum(dim=(1, 2, 3)).mean()
    scores = shift_scores[:, ::bin_stride]
    align_term = F.cross_entropy(logit_scale.exp() * scores, k_true // bin_stride, label_smoothing=smoothing)
    return field_term + heading_term * align_term


def unifygeo_loss(out: dict, model, rows: torch.Tensor, cols: torch.Tensor, field_yaw_deg: torch.Tensor,
                  k_true: torch.Tensor, cfg: LossConfig = LossConfig(), bin_stride: int = 1) -> dict:
    """All loss terms for a training batch; ``out`` is ``UnifyGeo.forward``'s output."""
    size = model.cfg.aerial_size
    sigma = cfg.sigma_px if cfg.sigma_px is not None else size / 96.0
    d_gt = gaussian_target(rows, cols, size, sigma)
    terms = {
        "D": loss_d(out["logits"], d_gt),
        "G": loss_g(out["ground_global"], out["aerial_global"], model.logit_scale, cfg.label_smoothing),
        "M": loss_m(out["matching"], d_gt, model.match_logit_scale()),
        "R": loss_r(out["ground_desc0"], out["aerial_desc0"], d_gt, model.logit_scale_rerank),
    }
    total = (cfg.weight_d * terms["D"] + cfg.weight_g * terms["G"] + cfg.weight_m * terms["M"]
             + cfg.weight_r * terms["R"])
    if "yaw_field" in out:
        terms["yaw"] = loss_yaw(out["yaw_field"], d_gt, field_yaw_deg, out["shift_scores"], k_true,
                                model.heading_logit_scale(), cfg.heading_term, cfg.label_smoothing, bin_stride)
        total = total + cfg.weight_yaw * terms["yaw"]
    terms["total"] = total
    return terms
