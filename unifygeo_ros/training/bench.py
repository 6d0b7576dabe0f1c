"""``unifygeo bench train``: the training step rate of a configuration, per precision.

One step is what :func:`.trainer.train` does per batch (:func:`.trainer.forward_and_loss`,
the backward pass, an AdamW step), on seeded random images, panorama headings and camera pixels,
so that the data pipeline is left out: it measures the device. The step times of every
precision are interleaved round by round, so that a machine whose speed drifts (shared
cores) affects each precision alike; medians are reported.

Entry point: :func:`bench_training`.
"""

from __future__ import annotations

import platform
import sys
import time

import numpy as np
import torch

from ..inference.heading import true_alignment
from ..model.losses import LossConfig
from ..model.ops import pick_device
from ..model.unifygeo import UnifyGeo
from ..model_config import get_config
from .trainer import (
    MEMORY_FORMATS,
    PRECISIONS,
    _param_groups,
    autocast_dtype,
    autocast_name,
    forward_and_loss,
    torch_memory_format,
)


def _step_inputs(cfg, batch: int, rng: np.random.Generator, device: torch.device) -> dict:
    h, w = cfg.ground_size
    a = cfg.aerial_size
    yaw = rng.uniform(-180.0, 180.0, batch)
    k_true, field_yaw = true_alignment(yaw, cfg, whole_columns=True)
    k_true = torch.from_numpy(np.asarray(k_true)).to(device)
    return {
        "ground": torch.from_numpy(rng.standard_normal((batch, 3, h, w), dtype=np.float32)).to(device),
        "aerial": torch.from_numpy(rng.standard_normal((batch, 3, a, a), dtype=np.float32)).to(device),
        "mask": torch.ones(batch, w, device=device),
        "rows": torch.from_numpy(rng.uniform(0, a - 1, batch).astype(np.float32)).to(device),
        "cols": torch.from_numpy(rng.uniform(0, a - 1, batch).astype(np.float32)).to(device),
        "k_true": k_true,
        "field_yaw": torch.from_numpy(np.asarray(field_yaw, dtype=np.float32)).to(device),
    }


def bench_training(config: str = "small", batch_size: int = 32, steps: int = 8, warmup: int = 2,
                   precisions: tuple[str, ...] = ("fp32", "bf16"), device: str = "auto", seed: int = 0,
                   progress: bool = True, memory_formats: tuple[str, ...] = ("channels_last",)) -> dict:
    """Median seconds per training step for each precision (see the module docstring).
    A precision the device cannot run is reported with the reason instead of a time.

    Every precision runs in each of ``memory_formats`` (the training's layout of the model
    and batches, :func:`.trainer.torch_memory_format`): the first format's runs are keyed
    by the precision's name, the others' by ``"PRECISION FORMAT"``."""
    from unifygeo_ros.progress import tqdm

    if steps < 1 or warmup < 0 or batch_size < 2:
        raise ValueError(f"expected steps >= 1, warmup >= 0 and batch_size >= 2, got {steps}, {warmup}, {batch_size}")
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise ValueError(f"precisions: expected one of {', '.join(PRECISIONS)}, got {', '.join(unknown) or 'none'}")
    if not memory_formats:
        raise ValueError(f"memory formats: expected at least one of {', '.join(MEMORY_FORMATS)}")
    layouts = {name: torch_memory_format(name) for name in memory_formats}
    dev = pick_device(device)
    cfg = get_config(config)
    runs, results = {}, {}
    for f, (layout_name, layout) in enumerate(layouts.items()):
        for precision in precisions:
            key = precision if f == 0 else f"{precision} {layout_name}"
            try:
                dtype = autocast_dtype(precision, dev)
            except ValueError as exc:
                results[key] = {"skipped": str(exc)}
                continue
            torch.manual_seed(seed)
            model = UnifyGeo(cfg).to(dev, memory_format=layout).train()
            runs[key] = {"dtype": dtype, "model": model, "times": [], "losses": [], "layout": layout,
                         "memory_format": layout_name,
                         "optimizer": torch.optim.AdamW(_param_groups(model, 0.04), lr=1e-4)}
    loss_cfg = LossConfig()
    rng = np.random.default_rng(seed)
    inputs = [_step_inputs(cfg, batch_size, rng, dev) for _ in range(min(4, warmup + steps))]
    bar = tqdm(total=(warmup + steps) * len(runs), desc=f"bench train ({config}, batch {batch_size})", unit="step",
               disable=not progress, file=sys.stderr)
    for i in range(warmup + steps):
        x = inputs[i % len(inputs)]
        for run in runs.values():
            model, dtype = run["model"], run["dtype"]
            ground = x["ground"].contiguous(memory_format=run["layout"])
            aerial = x["aerial"].contiguous(memory_format=run["layout"])
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            terms = forward_and_loss(model, ground, aerial, x["mask"], x["rows"], x["cols"],
                                     x["field_yaw"], x["k_true"], loss_cfg, dtype)
            run["optimizer"].zero_grad(set_to_none=True)
            terms["total"].backward()
            run["optimizer"].step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= warmup:
                run["times"].append(time.perf_counter() - t0)
                run["losses"].append(float(terms["total"].detach()))
            bar.update(1)
    bar.close()
    for key, run in runs.items():
        t = np.asarray(run["times"])
        results[key] = {"autocast": autocast_name(run["dtype"]), "memory_format": run["memory_format"],
                        "median_step_s": float(np.median(t)), "min_step_s": float(t.min()),
                        "pairs_per_s": float(batch_size / np.median(t)),
                        "final_loss": run["losses"][-1]}
    base = results.get("fp32", {}).get("median_step_s")
    for r in results.values():
        if base and "median_step_s" in r:
            r["speedup_vs_fp32"] = base / r["median_step_s"]
    return {"config": config, "batch_size": batch_size, "steps": steps, "warmup": warmup, "device": str(dev),
            "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
            "platform": platform.platform(), "memory_formats": list(layouts), "precisions": results}
