"""The ground and aerial branches of UnifyGeo's pseudo-Siamese encoder (paper Sec. III-C).

Each branch has its own (unshared) ConvNeXt stages 1-3, an F-head producing the detailed
feature map and an S-head feeding the feature aggregator that produces the global
descriptor. The ground branch also carries the ground projectors that turn its detailed
map F_g^0 into the per-level detailed ground descriptors f_g^l.

Limited field of view
---------------------
A pinhole or cropped ground image is first placed in the panorama frame (see
:mod:`unifygeo_ros.inference.fov`): the columns it covers hold its pixels, the others are
empty, and a *column mask* (one value per panorama pixel column, 1 = covered) goes with
it. The ground branch then

1. sets the uncovered columns of the (normalised) image to 0, i.e. the ImageNet mean
   colour, so nothing outside the view leaks in;
2. marks a feature column valid when at least half of its 32 pixel columns are covered;
3. removes invalid positions from the aggregator's attention keys and GeM mean, so the
   global descriptor summarises only what the camera saw;
4. zeroes the invalid columns of every f_g^l and returns the validity, so that the
   decoder's matching ignores them (masked LayerNorm, see :mod:`.decoder`).

A full panorama has an all-ones mask and takes exactly the paper's path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model_config import ModelConfig
from .aggregator import FeatureAggregator
from .convnext import ConvNeXtEncoder, ConvNeXtHead
from .validation import check_column_mask, check_image


class GroundProjector(nn.Module):
    """1x1 conv reducing the channels to ``c_l``, then a column-wise fully connected layer
    collapsing the ``rows`` of each column to one value: f_g^l of shape (B, c_l, W')."""

    def __init__(self, in_channels: int, column_channels: int, rows: int):
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, column_channels, 1)
        self.column_fc = nn.Linear(rows, 1)   # the same weights for every column and channel

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        x = self.reduce(f)                                  # (B, c_l, H', W')
        return self.column_fc(x.transpose(2, 3)).squeeze(-1)  # (B, c_l, W')


class GroundBranch(nn.Module):
    """Ground image -> global descriptor v_g and detailed ground descriptors f_g^0..3."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        circ = cfg.circular_ground_padding
        self.encoder = ConvNeXtEncoder(cfg.dims, cfg.depths, circular_width=circ, drop_path=cfg.drop_path)
        self.f_head = ConvNeXtHead(cfg.dims[2], cfg.dims[3], cfg.head_blocks, circular_width=circ)
        self.s_head = ConvNeXtHead(cfg.dims[2], cfg.dims[3], cfg.head_blocks, circular_width=circ)
        self.aggregator = FeatureAggregator(cfg.dims[3], cfg.attention_reduction, cfg.gem_p,
                                            layout_channels=cfg.layout_channels, cells=cfg.ground_feature_size,
                                            qk=cfg.aggregator_qk, global_norm=cfg.global_norm)
        rows = cfg.ground_feature_size[0]
        self.projectors = nn.ModuleList(
            GroundProjector(cfg.dims[3], c, rows) for c in cfg.column_channels)

    def forward(self, image: torch.Tensor, column_mask: torch.Tensor | None = None):
        """``image``: (B, 3, H, W) normalised RGB; ``column_mask``: optional (B, W) in [0, 1].

        Returns ``(v_g, f_g^0, f_g^1, f_g^2, f_g^3, valid, v_rolls)`` with ``v_g`` (B, D)
        unit-norm, ``f_g^l`` (B, c_l, W'), ``valid`` (B, W') in {0, 1} and ``v_rolls``
        (B, W', D) the global descriptor of the panorama turned clockwise by s columns
        (row s; row 0 is ``v_g``), see :meth:`.FeatureAggregator.rolled`.
        """
        check_image(image, "ground image", self.cfg.ground_size)
        batch, _, h, w = image.shape
        if column_mask is None:
            column_mask = image.new_ones(batch, w)
        else:
            check_column_mask(column_mask, batch, w)
            image = image * column_mask[:, None, None, :]
        valid = (F.avg_pool1d(column_mask[:, None, :], self.cfg.stride).squeeze(1) >= 0.5).to(image.dtype)
        s3 = self.encoder(image)[-1]
        detailed = self.f_head(s3)                          # F_g^0: (B, C, H', W')
        semantic = self.s_head(s3)                          # G_g
        rows = semantic.shape[2]
        v_rolls = self.aggregator.rolled(semantic, valid.repeat(1, rows))
        descriptors = [p(detailed) * valid[:, None, :] for p in self.projectors]
        return (v_rolls[:, 0], *descriptors, valid, v_rolls)


class AerialBranch(nn.Module):
    """Aerial tile -> global descriptor v_a and the multi-scale aerial features F_a^0..3."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = ConvNeXtEncoder(cfg.dims, cfg.depths, drop_path=cfg.drop_path)
        self.f_head = ConvNeXtHead(cfg.dims[2], cfg.dims[3], cfg.head_blocks)
        self.s_head = ConvNeXtHead(cfg.dims[2], cfg.dims[3], cfg.head_blocks)
        cells = cfg.aerial_size // cfg.stride
        self.aggregator = FeatureAggregator(cfg.dims[3], cfg.attention_reduction, cfg.gem_p,
                                            layout_channels=cfg.layout_channels, cells=(cells, cells),
                                            qk=cfg.aggregator_qk, global_norm=cfg.global_norm)

    def forward(self, image: torch.Tensor):
        """``image``: (B, 3, L, L). Returns ``(v_a, F_a^0, F_a^1, F_a^2, F_a^3)``: F_a^0 from the
        F-head at L/32, then the encoder's stage 3, 2 and 1 outputs at L/16, L/8, L/4."""
        check_image(image, "aerial image", (self.cfg.aerial_size, self.cfg.aerial_size))
        s1, s2, s3 = self.encoder(image)
        v_a = self.aggregator(self.s_head(s3))
        return v_a, self.f_head(s3), s3, s2, s1
