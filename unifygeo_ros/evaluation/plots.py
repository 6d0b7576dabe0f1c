"""Pictures for evaluation: a few queries with their top-3 tiles and D over the chosen tile."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..model.unifygeo import IMAGENET_MEAN, IMAGENET_STD

GREEN, RED, AMBER = (40, 200, 40), (230, 40, 40), (240, 180, 20)


def to_uint8(img_chw) -> np.ndarray:
    """A normalised CHW tensor back to an HWC uint8 RGB image."""
    x = img_chw.detach().cpu().float().numpy().transpose(1, 2, 0)
    x = x * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def heatmap_overlay(tile: np.ndarray, d: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    v = np.sqrt(d / max(float(d.max()), 1e-12))     # square root: the tail stays visible
    heat = cv2.applyColorMap((255 * v).astype(np.uint8), cv2.COLORMAP_INFERNO)[:, :, ::-1]
    heat = cv2.resize(heat, (tile.shape[1], tile.shape[0]), interpolation=cv2.INTER_NEAREST)
    return ((1 - alpha) * tile + alpha * heat).astype(np.uint8)


def label(img: np.ndarray, text: str, org: tuple[int, int]) -> None:
    for dx, dy in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        cv2.putText(img, text, (org[0] + dx, org[1] + dy), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)


def query_sheet(examples: list[dict], refs, path: str | Path, tile_px: int = 192) -> Path:
    """One row per query: panorama | top-3 tiles (green: positive, amber: semi-positive,
    red: neither; after re-ranking) | D over the chosen tile (truth: green ring, estimate: red cross)."""
    rows = []
    for ex in examples:
        pano = to_uint8(ex["pano"])
        pano = cv2.resize(pano, (2 * tile_px, tile_px), interpolation=cv2.INTER_AREA)
        tiles = []
        for rank, t in enumerate(ex["candidates"]):
            img = cv2.resize(to_uint8(refs[t]["aerial"]), (tile_px, tile_px), interpolation=cv2.INTER_AREA)
            colour = GREEN if t == ex["positives"][0] else AMBER if t in ex["positives"][1:] else RED
            cv2.rectangle(img, (1, 1), (tile_px - 2, tile_px - 2), colour, 3)
            label(img, f"#{rank + 1}", (6, 18))
            tiles.append(img)
        while len(tiles) < 3:
            tiles.append(np.zeros((tile_px, tile_px, 3), np.uint8))
        chosen = cv2.resize(to_uint8(refs[ex["candidates"][0]]["aerial"]), (tile_px, tile_px),
                            interpolation=cv2.INTER_AREA)
        over = heatmap_overlay(chosen, ex["D"])
        s = tile_px / ex["D"].shape[0]
        tr, tc = ex["truth"]
        er, ec = ex["estimate"]
        if 0 <= tr < ex["D"].shape[0] and 0 <= tc < ex["D"].shape[1]:
            cv2.circle(over, (int(tc * s), int(tr * s)), 7, GREEN, 2)
        cv2.drawMarker(over, (int(ec * s), int(er * s)), RED, cv2.MARKER_CROSS, 14, 2)
        label(over, f"{ex['mode']} heading, error {ex['error_m']:.1f} m", (6, tile_px - 8))
        rows.append(np.concatenate([pano, *tiles, over], axis=1))
    sheet = np.concatenate(rows, axis=0) if rows else np.zeros((tile_px, 6 * tile_px, 3), np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet[:, :, ::-1])
    return path
