"""The feature aggregator (paper Sec. III-C, Eq. 2 and 3), with a layout term (ours).

Single-head self-attention over the S-head's region descriptors G (no multi-head, no
feed-forward network): Q and K come from LayerNorm(G), V from G itself; Q, K and V have
half of G's channels and the attention output is projected back to G's width and added
to G. GeM pooling with a learnable power then gives the global descriptor, which is
L2-normalised.

The authors' released checkpoints (configuration ``vigor``) were trained with another
Q / K path and one more normalisation (``qk="post_norm_relu"``, ``global_norm=True``):
Q = ReLU(LN(W_q G)) and K = ReLU(LN(W_k G)), each with its own LayerNorm over the
halved width, and a LayerNorm over the GeM vector before the L2 normalisation. V, the
scale 1/sqrt(C/2), the restoring projection, the residual and GeM are as above.

Layout term (beyond the paper, ``layout_channels > 0``)
------------------------------------------------------
Attention without positions and GeM pooling make the paper's descriptor a bag of
features: it cannot tell *where* around the camera (or where in the tile) something is.
With ``layout_channels = c``, a 1 x 1 convolution reduces G to ``c`` channels, the map is
flattened in its fixed order (rows, then columns: azimuth for the ground, east/north for
the north-up tile), LayerNorm'ed and projected to the descriptor width, and this is
added to the GeM vector before the L2 normalisation. The projection starts at zero, so a
model without it is reproduced exactly until training moves it. On the shipped model,
trained on frozen encoders (see :mod:`unifygeo_ros.training.retrieval_stage`), it raised
cross-area retrieval R@1 from 10 % to 25 % (TestNordic, known heading).

The ground descriptor now depends on the heading. :meth:`FeatureAggregator.rolled`
gives the descriptor of the map rolled left by every whole column (a 360 / W' degree turn
of the panorama each); with the ``R`` sub-stride copies of the panorama these are the
descriptors of all ``K`` heading alignments (see :mod:`.heading`), and retrieval without
a known heading scores a tile by the best of them.

For a limited field of view the ground branch passes a mask of the feature positions
the camera covers: masked positions are removed as attention keys and from the GeM mean,
and zeroed in the layout map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeatureAggregator(nn.Module):
    def __init__(self, dim: int, reduction: int = 2, gem_p: float = 3.0, eps: float = 1e-6,
                 layout_channels: int = 0, cells: tuple[int, int] = (1, 1), qk: str = "pre_norm",
                 global_norm: bool = False):
        super().__init__()
        inner = dim // reduction
        if qk not in ("pre_norm", "post_norm_relu"):
            raise ValueError(f"aggregator: qk must be 'pre_norm' or 'post_norm_relu', got {qk!r}")
        self.qk = qk
        if qk == "pre_norm":
            self.norm = nn.LayerNorm(dim, eps=1e-6)   # on Q and K only
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        if qk == "post_norm_relu":
            self.q_norm = nn.LayerNorm(inner, eps=1e-6)
            self.k_norm = nn.LayerNorm(inner, eps=1e-6)
        self.to_v = nn.Linear(dim, inner)
        self.restore = nn.Linear(inner, dim)
        self.scale = inner ** -0.5                # 1 / sqrt(lambda)
        self.p = nn.Parameter(torch.tensor([gem_p]))
        self.eps = eps
        self.post_norm = nn.LayerNorm(dim, eps=1e-6) if global_norm else None
        # Start as the identity map (plain GeM) so that pretrained features are kept.
        nn.init.zeros_(self.restore.weight)
        nn.init.zeros_(self.restore.bias)
        self.layout_channels = int(layout_channels)
        self.cells = (int(cells[0]), int(cells[1]))
        if self.layout_channels:
            flat = self.layout_channels * self.cells[0] * self.cells[1]
            self.layout_reduce = nn.Conv2d(dim, self.layout_channels, 1)
            self.layout_norm = nn.LayerNorm(flat, eps=1e-6)
            self.layout_proj = nn.Linear(flat, dim)
            nn.init.zeros_(self.layout_proj.weight)
            nn.init.zeros_(self.layout_proj.bias)

    def pooled(self, g: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """The paper's part: attention, then GeM (and ``global_norm``'s LayerNorm) (B, C),
        before the L2 normalisation."""
        x = g.flatten(2).transpose(1, 2)                        # (B, N, C)
        if self.qk == "pre_norm":
            n = self.norm(x)
            q, k = self.to_q(n), self.to_k(n)
        else:
            q, k = F.relu(self.q_norm(self.to_q(x))), F.relu(self.k_norm(self.to_k(x)))
        attn = torch.matmul(q, k.transpose(1, 2)) * self.scale
        if valid is not None:
            attn = attn - (1.0 - valid[:, None, :]) * 1e4
        phi = x + self.restore(torch.matmul(attn.softmax(dim=-1), self.to_v(x)))
        powered = phi.clamp(min=self.eps).pow(self.p)
        if valid is None:
            mean = powered.mean(dim=1)
        else:
            w = valid[:, :, None]
            mean = (powered * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
        if self.post_norm is not None:
            # A mean of values >= eps^p is >= eps^p: clamping there changes nothing but an
            # all-masked map (mean 0), as the released model's GeM does.
            return self.post_norm(torch.maximum(mean, self.eps ** self.p).pow(1.0 / self.p))
        return mean.clamp(min=self.eps).pow(1.0 / self.p)

    def _layout_map(self, g: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        if tuple(g.shape[2:]) != self.cells:
            raise ValueError(f"aggregator: the layout term expects a {self.cells[0]} x {self.cells[1]} map, "
                             f"got {tuple(g.shape[2:])}")
        m = self.layout_reduce(g)
        if valid is not None:
            m = m * valid.view(g.shape[0], 1, *self.cells)
        return m

    def _layout(self, m: torch.Tensor) -> torch.Tensor:
        return self.layout_proj(self.layout_norm(m.flatten(1)))

    def forward(self, g: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``g``: (B, C, H, W) region descriptors; ``valid``: optional (B, H*W) in {0, 1}."""
        v = self.pooled(g, valid)
        if self.layout_channels:
            v = v + self._layout(self._layout_map(g, valid))
        return F.normalize(v, dim=-1)

    def rolled(self, g: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, W, D): the descriptor of ``g`` rolled left by s columns, s = 0 .. W-1 (row s
        = 0 is :meth:`forward`). Without the layout term every row is the same vector."""
        v = self.pooled(g, valid)                                # roll-invariant
        w = g.shape[-1]
        if not self.layout_channels:
            return F.normalize(v, dim=-1)[:, None].expand(g.shape[0], w, v.shape[1])
        m = self._layout_map(g, valid)
        layouts = torch.stack([self._layout(torch.roll(m, shifts=-s, dims=-1)) for s in range(w)], dim=1)
        return F.normalize(v[:, None] + layouts, dim=-1)
