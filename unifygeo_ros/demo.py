"""``unifygeo demo``: the README's main job on an embedded default.

Until a trained model ships with the package, this is a smoke run of the whole network
on the synthetic world: it generates a small city, renders a street panorama (unknown
heading) and the aerial tile around it, runs the ground branch (with the sub-stride
copies of the heading search), the aerial branch and the decoder, times each stage and
writes a PNG of the panorama, the tile and D. With untrained weights the estimate is
meaningless, and the output says so.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .cli import add_json_flag, emit


def register(sub, bench_sub) -> None:
    p = sub.add_parser("demo", help="run the embedded default: a synthetic city through the network")
    p.add_argument("--seed", type=int, default=2026, help="city seed (default 2026)")
    p.add_argument("--config", default="small", help="model configuration (default small)")
    p.add_argument("--out", default="out/demo", help="output folder for the PNG (default out/demo)")
    add_json_flag(p)
    p.set_defaults(handler=demo_command)


def _heatmap(d: np.ndarray) -> np.ndarray:
    import cv2

    v = d / max(float(d.max()), 1e-12)
    return cv2.applyColorMap((255 * v).astype(np.uint8), cv2.COLORMAP_INFERNO)[:, :, ::-1]


def demo_command(args) -> int:
    import cv2
    import torch

    from .model.config import get_config
    from .model.heading import unknown_heading_prior, yaw_from_alignment
    from .model.unifygeo import IMAGENET_MEAN, IMAGENET_STD, UnifyGeo
    from .sim.render import local_to_ortho_pixel, render_ortho, render_panorama
    from .sim.world import generate_city

    cfg = get_config(args.config)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.perf_counter()
    city = generate_city(args.seed, 300.0, 41.88, -87.63, style="default")
    rng = np.random.default_rng(args.seed)
    xy = city.street_positions(1, rng, margin_m=50.0)[0]   # the whole tile inside the city
    yaw = float(rng.uniform(-180.0, 180.0))
    mpp = 0.5                                   # a 64 m tile at the small model's 128 px
    tile_center = xy + rng.uniform(-12.0, 12.0, size=2)
    pano = render_panorama(city, xy, yaw, cfg.ground_size[1], cfg.ground_size[0])
    tile = render_ortho(city, tile_center, cfg.aerial_size, mpp)
    truth_rc = local_to_ortho_pixel(xy[0], xy[1], tile_center, cfg.aerial_size, mpp)
    timings["render_ms"] = (time.perf_counter() - t0) * 1e3

    torch.manual_seed(0)
    model = UnifyGeo(cfg).eval()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def tensor(img):
        return (torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0 - mean) / std

    with torch.inference_mode():
        t = time.perf_counter()
        ground = model.encode_ground(tensor(pano))
        timings["ground_branch_ms"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        aerial = model.encode_aerial(tensor(tile))
        timings["aerial_branch_ms"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        out = model.decode(ground, aerial, unknown_heading_prior(1, cfg))
        timings["decoder_ms"] = (time.perf_counter() - t) * 1e3
    d = out["D"][0].numpy()
    r, c = np.unravel_index(int(d.argmax()), d.shape)
    field = out["yaw_field"][0, :, r, c].numpy()
    est_yaw = float(yaw_from_alignment(int(out["shift"][0]), np.degrees(np.arctan2(field[1], field[0])), cfg))

    # Picture: panorama on top; tile and D (truth green, MAP red) below.
    side = cfg.aerial_size * 2
    tile_big = cv2.resize(tile, (side, side), interpolation=cv2.INTER_NEAREST)
    heat = cv2.resize(_heatmap(d), (side, side), interpolation=cv2.INTER_NEAREST)
    overlay = (0.55 * tile_big + 0.45 * heat).astype(np.uint8)
    for img in (tile_big, overlay):
        cv2.circle(img, (int(truth_rc[1] * 2), int(truth_rc[0] * 2)), 5, (0, 220, 0), 2)
    cv2.drawMarker(overlay, (int((c + 0.5) * 2), int((r + 0.5) * 2)), (255, 40, 40), cv2.MARKER_CROSS, 14, 2)
    bottom = np.concatenate([tile_big, overlay], axis=1)
    top = cv2.resize(pano, (bottom.shape[1], bottom.shape[1] // 2), interpolation=cv2.INTER_LINEAR)
    sheet = np.concatenate([top, bottom], axis=0)
    png = out_dir / "demo.png"
    cv2.imwrite(str(png), sheet[:, :, ::-1])

    result = {
        "note": "smoke run with UNTRAINED weights: the estimate is meaningless until a trained model ships",
        "config": cfg.name,
        "city_seed": args.seed,
        "camera_xy": [float(xy[0]), float(xy[1])],
        "true_yaw_deg": yaw,
        "true_pixel": [float(truth_rc[0]), float(truth_rc[1])],
        "map_pixel": [int(r), int(c)],
        "estimated_yaw_deg": est_yaw,
        "D_sum": float(d.sum()),
        "m0_max": float(out["m0_max"][0]),
        "alignment": int(out["shift"][0]),
        "heading_bins": cfg.heading_bins,
        "timings_ms": {k: round(v, 1) for k, v in timings.items()},
        "png": str(png),
    }

    def human(res: dict) -> str:
        t = res["timings_ms"]
        return "\n".join([
            f"unifygeo demo ({res['config']} model) -- {res['note']}",
            f"city seed {res['city_seed']}: camera at ({res['camera_xy'][0]:.1f}, {res['camera_xy'][1]:.1f}) m, "
            f"true yaw {res['true_yaw_deg']:.1f} deg (ENU)",
            f"D sums to {res['D_sum']:.6f}; MAP pixel {res['map_pixel']} (truth {res['true_pixel'][0]:.1f}, "
            f"{res['true_pixel'][1]:.1f}); yaw estimate {res['estimated_yaw_deg']:.1f} deg; "
            f"alignment {res['alignment']} of {res['heading_bins']}",
            f"render {t['render_ms']:.0f} ms, ground branch {t['ground_branch_ms']:.0f} ms, aerial branch "
            f"{t['aerial_branch_ms']:.0f} ms, decoder {t['decoder_ms']:.0f} ms",
            f"picture: {res['png']}",
        ])

    emit(result, args.json, human)
    return 0
