"""The hierarchical localization decoder (paper Sec. III-C) with the heading search and
the yaw head that go beyond the paper.

Matching at level l (0 = coarsest):
    M^l(i, j) = < n(LN_g(f_g^l)), n(LN_a(F^l(:, i, j))) >,   n = L2 normalisation,
with F^0 = F_a^0 and F^l (l > 0) the decoder's own maps. M^0 is concatenated with the
L2-normalised F^0, up-sampled by a transposed convolution, joined with the encoder's
aerial skip feature and convolved into F^1; and so on to level 3, whose map and M^3 are
up-sampled to L x L logits; D = softmax over the L*L pixels.

The ground descriptor f_g^l is flattened channel by channel (index ``i * W' + u`` for
channel i of column u), or column by column (``u * c_l + i``) with
``column_major_descriptors``, as in the released checkpoints: the order decides which
aerial channel each element meets, and which LayerNorm weight it gets.

Heading search (unknown heading)
-------------------------------
The ground encoder pads panoramas circularly, so rolling a panorama left by ``s`` feature
columns rolls every f_g^l left by ``s`` columns. The ground branch may be run on ``R``
copies of the panorama rolled left by ``r * 32 / R`` pixels, giving ``K = R * W'``
candidate alignments ``k = s * R + r`` = a roll left by ``k * W / K`` pixels (a clockwise
turn of ``k * 360 / K`` degrees). The decoder scores each alignment by ``max_ij M^0_k``
(the quantity re-ranking uses), adds a log-prior over ``k`` (all zeros for an unknown
heading; ``-inf`` outside a window for a heading prior; one-hot for a known heading or
teacher forcing), takes the best ``k``, and decodes with the descriptors aligned by it.
M^0 is computed once for all alignments and reused.

Matching score (beyond the paper)
---------------------------------
``match_score = mean_l max_ij M^l`` at the chosen alignment: how well the aligned ground
descriptors match their best cell at every level, coarse to fine (a mean, so that it is a
cosine like ``max M^0`` and the re-ranking and covariance scales stay those of Eq. 4). The fine levels see the
tile at 4-8 times M^0's resolution, so this score tells the right tile and the right
alignment apart much better than ``max M^0`` alone (see :mod:`.rerank` and
:mod:`.alignment_search`, which measure it). It is what re-ranking and the alignment
search use.

Yaw head
--------
From level 3 (M^3 and the normalised map), a small convolutional head predicts a 2-vector
field over the L x L pixels whose direction (cos, sin) is the ENU yaw of the *aligned*
panorama's forward direction as seen from that pixel (90 deg when alignment is perfect,
since an aligned panorama faces north). The field is returned unnormalised: its angle
``atan2(y, x)`` is the yaw (the loss normalises it), and normalising near-zero vectors
would only amplify numerical noise. It is read at D's MAP pixel; the input panorama's
yaw is then ``field_yaw + k * 360 / K`` (see :mod:`unifygeo_ros.inference.heading`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model_config import ModelConfig
from .convnext import LayerNorm2d
from .ops import l2_normalize


def masked_layer_norm(x: torch.Tensor, mask: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """LayerNorm over the last dim using only elements where ``mask`` is 1; masked
    elements come out as 0. Equals ``norm(x)`` when the mask is all ones."""
    count = mask.sum(dim=-1, keepdim=True).clamp(min=1.0)
    mean = (x * mask).sum(dim=-1, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(dim=-1, keepdim=True) / count
    y = (x - mean) / torch.sqrt(var + norm.eps)
    return (y * norm.weight + norm.bias) * mask


def conv_bn_block(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch, eps=1e-6),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1),
    )


class LocalizationDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.level_channels
        self.columns = cfg.ground_columns
        self.subdivisions = cfg.heading_subdivisions
        self.column_major = cfg.column_major_descriptors
        self.ground_norms = nn.ModuleList(nn.LayerNorm(c, eps=1e-6) for c in ch)
        self.aerial_norms = nn.ModuleList(LayerNorm2d(c, eps=1e-6) for c in ch)
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(ch[l] + 1, ch[l + 1], 2, stride=2) for l in range(3))
        self.fuse = nn.ModuleList(conv_bn_block(2 * ch[l + 1], ch[l + 1]) for l in range(3))
        c3 = ch[3]
        self.final_upsample = nn.Sequential(
            nn.ConvTranspose2d(c3 + 1, c3 // 2, 2, stride=2),
            nn.BatchNorm2d(c3 // 2, eps=1e-6),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c3 // 2, c3 // 4, 2, stride=2),
        )
        self.to_logits = nn.Sequential(
            nn.Conv2d(c3 // 4, cfg.decoder_hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(cfg.decoder_hidden, eps=1e-6),
            nn.ReLU(inplace=True),
            nn.Conv2d(cfg.decoder_hidden, 1, 3, padding=1),
        )
        self.yaw_head = nn.Sequential(
            nn.Conv2d(c3 + 1, cfg.yaw_hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(cfg.yaw_hidden, 2, 3, padding=1),
        ) if cfg.yaw_head else None
        w = self.columns
        self.register_buffer("roll_index", (torch.arange(w)[None, :] + torch.arange(w)[:, None]) % w,
                             persistent=False)   # [s, u] = (u + s) mod W': roll left by s

    # ---- helpers ---------------------------------------------------------------------------
    def _flat(self, t: torch.Tensor) -> torch.Tensor:
        """(..., c, W') -> (..., c*W'): channel by channel, or column by column
        (``column_major_descriptors``, the released checkpoints' order)."""
        if self.column_major:
            t = t.transpose(-1, -2)
        return t.flatten(-2)

    def _all_alignments(self, g: torch.Tensor, valid: torch.Tensor):
        """(B, R, c, W') descriptors -> (B, K, c*W') for every alignment k = s*R + r."""
        b, r, c, w = g.shape
        rolled = g[..., self.roll_index]                         # (B, R, c, S, W')
        rolled = self._flat(rolled.permute(0, 3, 1, 2, 4).reshape(b, w * r, c, w))
        vmask = valid[..., self.roll_index]                      # (B, R, S, W')
        vmask = self._flat(vmask.permute(0, 2, 1, 3).reshape(b, w * r, 1, w).expand(b, w * r, c, w))
        return rolled, vmask

    def _select(self, g: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Pick copy ``k % R`` of (B, R, c, W') and roll it left by ``k // R`` columns."""
        b, _, c, w = g.shape
        copy = torch.remainder(k, self.subdivisions)
        shift = torch.div(k, self.subdivisions, rounding_mode="floor")
        g = torch.gather(g, 1, copy.view(b, 1, 1, 1).expand(b, 1, c, w)).squeeze(1)
        index = torch.remainder(torch.arange(w, device=g.device)[None, :] + shift[:, None], w)
        return torch.gather(g, 2, index[:, None, :].expand(b, c, w))

    def _match(self, level: int, g: torch.Tensor, gmask: torch.Tensor, aerial: torch.Tensor) -> torch.Tensor:
        """M^level: (B, h, w) cosine scores of one aligned ground descriptor against every cell."""
        gd = F.normalize(masked_layer_norm(g, gmask, self.ground_norms[level]), dim=-1)
        ad = l2_normalize(self.aerial_norms[level](aerial), dim=1)
        return torch.einsum("bc,bchw->bhw", gd, ad)

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, ground: list[torch.Tensor], valid: torch.Tensor, aerial: list[torch.Tensor],
                heading_logprior: torch.Tensor) -> dict[str, torch.Tensor]:
        """``ground``: f_g^0..3, each (B, R, c_l, W'); ``valid``: (B, R, W');
        ``aerial``: F_a^0..3; ``heading_logprior``: (B, K) added to the alignment scores."""
        b = valid.shape[0]
        # Level 0 for all alignments: the heading search and M^0.
        g_all, m_all = self._all_alignments(ground[0], valid)
        gd_all = F.normalize(masked_layer_norm(g_all, m_all, self.ground_norms[0]), dim=-1)   # (B, K, C0)
        a0 = aerial[0]
        ad0 = l2_normalize(self.aerial_norms[0](a0), dim=1).flatten(2)                         # (B, C0, N0)
        m0_all = torch.bmm(gd_all, ad0)                                                       # (B, K, N0)
        shift_scores = m0_all.max(dim=2).values                                               # (B, K)
        k = torch.argmax(shift_scores + heading_logprior, dim=1)                              # (B,)
        m0 = torch.gather(m0_all, 1, k.view(b, 1, 1).expand(b, 1, m0_all.shape[2])).squeeze(1)
        m0_max = m0.max(dim=1).values
        n0 = a0.shape[-1]
        matching = [m0.view(b, n0, n0)]

        aligned = [self._select(g, k) for g in ground]                                        # (B, c_l, W')
        valid_k = self._select(valid[:, :, None, :], k)                                        # (B, 1, W')
        ground_desc0 = torch.gather(gd_all, 1, k.view(b, 1, 1).expand(b, 1, gd_all.shape[2])).squeeze(1)

        x = torch.cat([matching[0][:, None], l2_normalize(a0, dim=1)], dim=1)
        for level in range(1, 4):
            x = self.upsample[level - 1](x)
            x = self.fuse[level - 1](torch.cat([x, aerial[level]], dim=1))
            g = self._flat(aligned[level])
            gmask = self._flat(valid_k.expand_as(aligned[level]))
            matching.append(self._match(level, g, gmask, x))
            x = torch.cat([matching[level][:, None], l2_normalize(x, dim=1)], dim=1)
        logits = self.to_logits(self.final_upsample(x)).flatten(1)                            # (B, L*L)
        match_score = sum(m.flatten(1).max(dim=1).values for m in matching) / len(matching)   # (B,)
        side = self.cfg.aerial_size
        out = {
            "logits": logits,
            "D": logits.softmax(dim=1).view(b, side, side),
            "matching": matching,
            "shift_scores": shift_scores,
            "shift": k,
            "m0_max": m0_max,
            "match_score": match_score,
            "ground_desc0": ground_desc0,
            "aerial_desc0": ad0,
        }
        if self.yaw_head is not None:
            out["yaw_field"] = F.interpolate(self.yaw_head(x), size=(side, side), mode="bilinear",
                                             align_corners=False)
        return out
