"""The feature aggregator (paper Sec. III-C, Eq. 2 and 3).

Single-head self-attention over the S-head's region descriptors G (no multi-head, no
feed-forward network): Q and K come from LayerNorm(G), V from G itself; Q, K and V have
half of G's channels and the attention output is projected back to G's width and added
to G. GeM pooling with a learnable power then gives the global descriptor, which is
L2-normalised.

For a limited field of view the ground branch passes a mask of the feature positions
the camera covers: masked positions are removed as attention keys and from the GeM mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeatureAggregator(nn.Module):
    def __init__(self, dim: int, reduction: int = 2, gem_p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        inner = dim // reduction
        self.norm = nn.LayerNorm(dim, eps=1e-6)   # on Q and K only
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.restore = nn.Linear(inner, dim)
        self.scale = inner ** -0.5                # 1 / sqrt(lambda)
        self.p = nn.Parameter(torch.tensor([gem_p]))
        self.eps = eps
        # Start as the identity map (plain GeM) so that pretrained features are kept.
        nn.init.zeros_(self.restore.weight)
        nn.init.zeros_(self.restore.bias)

    def forward(self, g: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``g``: (B, C, H, W) region descriptors; ``valid``: optional (B, H*W) in {0, 1}."""
        x = g.flatten(2).transpose(1, 2)                        # (B, N, C)
        n = self.norm(x)
        attn = torch.matmul(self.to_q(n), self.to_k(n).transpose(1, 2)) * self.scale
        if valid is not None:
            attn = attn - (1.0 - valid[:, None, :]) * 1e4
        phi = x + self.restore(torch.matmul(attn.softmax(dim=-1), self.to_v(x)))
        powered = phi.clamp(min=self.eps).pow(self.p)
        if valid is None:
            mean = powered.mean(dim=1)
        else:
            w = valid[:, :, None]
            mean = (powered * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
        v = mean.clamp(min=self.eps).pow(1.0 / self.p)
        return F.normalize(v, dim=-1)
