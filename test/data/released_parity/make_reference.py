"""Write reference.npz and meta.json: the outputs of the authors' UnifyGeo implementation for seeded
weights and inputs (see README.md here). Runs in an environment with timm 0.9.16 and a
checkout of github.com/chord-sz/UnifyGeo; their code is imported from that checkout, never
copied here.

    python make_reference.py --their-repo /path/to/UnifyGeo [--out reference.npz]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[3]
SEED = 0          # weights: released_state_dict(SEED)
INPUT_SEED = 1    # inputs: released_parity_inputs(INPUT_SEED, BATCH)
BATCH = 2


def their_config() -> SimpleNamespace:
    """The settings their evaluator builds the released network with (eval_vigor.py)."""
    return SimpleNamespace(model="convnext_tiny.fb_in22k_ft_in1k_384", backbone_norm=None, grd_aggregator="soa_gem",
                           sat_aggregator="soa_gem", aggregator_norm="LN", enc_dims=768, decoder_norm="BN",
                           decoder_match_norm=True, train_rerank=False, aux_loss=True)


def reduce(name: str, x, np):
    """The stored part of each output: small ones whole, the large ones subsampled."""
    x = np.asarray(x, dtype=np.float32)
    if name in ("M3",):
        return x[:, ::2, ::2]                        # 48 x 48 of 96 x 96
    if name in ("D", "logits"):
        return x[:, ::8, ::8]                        # 48 x 48 of 384 x 384
    return x


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--their-repo", required=True, help="a checkout of github.com/chord-sz/UnifyGeo")
    ap.add_argument("--out", default=str(Path(__file__).with_name("reference.npz")))
    args = ap.parse_args()
    sys.path[:0] = [str(Path(args.their_repo).resolve()), str(REPO)]

    import numpy as np
    import torch
    import torch.nn.functional as F
    from unifygeo.models import build_model    # theirs

    from unifygeo_ros.model.released import from_released, released_parity_inputs, released_state_dict
    from unifygeo_ros.model.unifygeo import UnifyGeo

    torch.set_grad_enabled(False)
    state = released_state_dict(SEED)
    ground, aerial = released_parity_inputs(INPUT_SEED, BATCH)

    model = build_model(their_config())
    model.load_state_dict(state, strict=True)
    model.eval()
    out_grd, out_sat = model(ground, aerial)
    theirs = {
        "ground_global": F.normalize(out_grd["grd_global_feats"], dim=-1),
        "aerial_global": F.normalize(out_sat["sat_global_feats"], dim=-1),
        "M0": out_grd["match_attns"][:, 0],
        **{f"M{i + 1}": aux["match_attns"][:, 0] for i, aux in enumerate(out_grd["aux_outputs"])},
        "logits": out_grd["cls_logits"].view(BATCH, 384, 384),
        "D": out_grd["heatmap"][:, 0],
    }

    ours_model = UnifyGeo("vigor").eval()
    ours_model.load_state_dict(from_released(state), strict=True)
    g = ours_model.encode_ground(ground)
    a = ours_model.encode_aerial(aerial)
    o = ours_model.decode(g, a)
    ours = {"ground_global": g["global"], "aerial_global": a["global"], "logits": o["logits"].view(BATCH, 384, 384),
            "D": o["D"], **{f"M{i}": m for i, m in enumerate(o["matching"])}}

    report = {}
    for name, t in theirs.items():
        diff = (ours[name] - t).abs()
        report[name] = {"shape": list(t.shape), "max_abs_diff": float(diff.max()),
                        "max_rel_diff": float((diff / t.abs().clamp_min(1e-30)).max()) if name == "D" else None,
                        "max_abs_value": float(t.abs().max())}
    arrays = {name: reduce(name, t.numpy(), np) for name, t in theirs.items()}
    d = theirs["D"].flatten(1)
    arrays["D_argmax"] = d.argmax(dim=1).numpy()
    arrays["D_max"] = d.max(dim=1).values.numpy()
    arrays["logits_logsumexp"] = theirs["logits"].flatten(1).logsumexp(dim=1).numpy()
    np.savez_compressed(args.out, **arrays)
    import timm

    meta = {"seed": SEED, "input_seed": INPUT_SEED, "batch": BATCH, "torch": torch.__version__,
            "timm": timm.__version__, "stored": {k: list(v.shape) for k, v in arrays.items()},
            "full_output_comparison": report}
    Path(args.out).with_name("meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
