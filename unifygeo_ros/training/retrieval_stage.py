"""``unifygeo train --stage retrieval``: retrain the global descriptors on frozen encoders.

The full training (:mod:`.trainer`) learns everything at once; on a small compute budget
the global descriptor is what lags (the decoder verifies tiles far better than retrieval
finds them). This stage starts from a trained checkpoint (``--init``), freezes the ConvNeXt
encoders, the F-heads, the ground projectors and the decoder, and trains only what the
retrieval descriptor is made of: both branches' S-heads and aggregators, with the
aggregators' layout term (see :mod:`unifygeo_ros.model.aggregator`; added at zero when the
checkpoint has none), and the retrieval temperature.

Because the encoders are frozen, their stage-3 maps are computed once and cached (fp16,
in memory): each panorama as given and mirrored, each tile in its eight flips and
quarter turns. An epoch then costs only the S-heads, which makes dozens of epochs with
large batches affordable on a CPU. The augmentations are the full training's synchronised
ones, applied to the cached maps: a flip picks the mirrored panorama and tile; a quarter
turn picks the turned tile and rolls the panorama map by a quarter of its columns (exact:
the ground encoder pads circularly); a limited field of view (``fov``) zeroes the map
columns outside a random 70-180 degree wedge and masks them in the aggregator. Batches
come from the same sampler as the full training (no false negatives, geographic hard
negatives after the first epoch); the loss is the symmetric InfoNCE L_G with label
smoothing; AdamW with one warm-up epoch and cosine decay; ``feature_dropout`` drops
whole channels of the cached maps.

Nothing the decoder uses changes, so metric localization and the alignment search are
exactly those of the checkpoint; only retrieval (and re-ranking, which adds its score)
moves. A checkpoint ``last.pt`` is written after every epoch (``resume``), ``log.csv``
has every step, and ``model.pt`` the result with both trainings' records.

Entry point: :func:`train_retrieval` with a :class:`RetrievalStageConfig`.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..model.losses import loss_g
from ..model.ops import pick_device
from ..model.unifygeo import UnifyGeo, load_checkpoint, save_checkpoint
from ..model_config import get_config
from .augment import fov_column_mask
from .sampler import ConflictFreeBatchSampler
from .trainer import (
    _param_groups,
    _sampler_inputs,
    autocast,
    autocast_dtype,
    autocast_name,
    given_options,
    learning_rate,
    open_log,
    release_freed_memory,
    resume_state,
)

DEFAULT_LAYOUT_CHANNELS = 32
CACHE_BUDGET_BYTES = 12 * 2 ** 30
TRAINED_PREFIXES = ("ground.s_head.", "ground.aggregator.", "aerial.s_head.", "aerial.aggregator.")


@dataclass
class RetrievalStageConfig:
    data: str
    out: str
    init: str                           # the trained checkpoint to start from
    config: str | None = None           # expected configuration name (checked against --init)
    protocol: str = "same_area"
    split: str = "train"
    cities: tuple[str, ...] | None = None
    labels: str = "auto"
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.04
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    hard_fraction: float = 0.5
    fov: float = 0.0                    # probability of a limited field of view
    fov_range_deg: tuple[float, float] = (70.0, 180.0)
    feature_dropout: float = 0.1
    layout_channels: int | None = None  # default: the checkpoint's, else DEFAULT_LAYOUT_CHANNELS
    reinit: bool = False                # start the S-heads and aggregators afresh instead of from --init
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"             # the maps' and the heads' forward pass (trainer.autocast_dtype)
    max_steps: int | None = None
    resume: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def stage_model(init: str, layout_channels: int | None = None, expect: str | None = None
                ) -> tuple[UnifyGeo, dict, str]:
    """The ``--init`` checkpoint as a model with the layout term (added at zero if missing),
    its payload and its model hash."""
    base, payload = load_checkpoint(init)
    init_hash = base.state_hash()
    if expect is not None and base.cfg.name != get_config(expect).name:
        raise ValueError(f"--init {init} holds a {base.cfg.name!r} model, expected {expect!r}")
    channels = layout_channels if layout_channels is not None else (base.cfg.layout_channels or DEFAULT_LAYOUT_CHANNELS)
    if channels < 1:
        raise ValueError(f"--layout-channels: expected >= 1, got {channels}")
    if channels == base.cfg.layout_channels:
        return base, payload, init_hash
    if base.cfg.layout_channels:
        raise ValueError(f"--init {init} already has a layout term of {base.cfg.layout_channels} channels; "
                         f"retraining it with {channels} is not supported")
    model = UnifyGeo(base.cfg.with_(layout_channels=channels))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    foreign = [k for k in missing if ".layout_" not in k]
    if foreign or unexpected:
        raise ValueError(f"--init {init}: unexpected weight names (missing {foreign[:3]}, unexpected {unexpected[:3]})")
    return model.eval(), payload, init_hash


def reinit_descriptors(model: UnifyGeo, seed: int) -> None:
    """Give the trained part (S-heads, aggregators) the weights of a freshly built model,
    drawn with ``seed``: the stage then depends on ``--init`` only through what it freezes."""
    torch.manual_seed(seed)
    fresh = UnifyGeo(model.cfg).state_dict()
    state = model.state_dict()
    state.update({k: v for k, v in fresh.items() if k.startswith(TRAINED_PREFIXES)})
    model.load_state_dict(state)


def _freeze_all_but_descriptors(model: UnifyGeo) -> None:
    """Freeze everything but the S-heads, the aggregators and the retrieval temperature."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(TRAINED_PREFIXES) or name == "logit_scale")


class FeatureCache:
    """Stage-3 maps of the frozen encoders: ``pano`` (N, 2, C, h, w) as given / mirrored,
    ``tiles`` (T, 8, C, a, a): variant ``f * 4 + k`` = mirrored (f = 1) then turned k
    quarter turns counter-clockwise (the order of :class:`.augment.PairAugment`)."""

    def __init__(self, model: UnifyGeo, queries, refs, device: torch.device, batch: int = 64, progress: bool = True,
                 amp_dtype: torch.dtype | None = None):
        from unifygeo_ros.progress import tqdm

        cfg = model.cfg
        h, w = cfg.ground_size
        c3 = cfg.dims[2]
        need = 2 * (len(queries) * 2 * c3 * (h // 16) * (w // 16) + len(refs) * 8 * c3 * (cfg.aerial_size // 16) ** 2)
        if need > CACHE_BUDGET_BYTES:
            raise ValueError(f"the retrieval stage caches the encoders' maps in memory: {need / 2 ** 30:.1f} GiB "
                             f"needed, more than {CACHE_BUDGET_BYTES / 2 ** 30:.0f} GiB; train on fewer cities "
                             f"(--cities) or use the full training")
        def encode(encoder, images):        # images come normalised; flips and turns commute with that
            with torch.inference_mode(), autocast(device.type, amp_dtype):
                return encoder(images.to(device))[-1].half().cpu()

        panos = []
        for i in tqdm(range(0, len(queries), batch), desc="caching panorama maps", unit="batch",
                      disable=not progress, file=sys.stderr):
            x = torch.stack([queries[j]["ground"] for j in range(i, min(len(queries), i + batch))])
            panos.append(torch.stack([encode(model.ground.encoder, x),
                                      encode(model.ground.encoder, torch.flip(x, dims=[-1]))], dim=1))
        tiles = []
        for i in tqdm(range(0, len(refs), batch), desc="caching tile maps", unit="batch",
                      disable=not progress, file=sys.stderr):
            x = torch.stack([refs[j]["aerial"] for j in range(i, min(len(refs), i + batch))])
            variants = []
            for f in (0, 1):
                xf = torch.flip(x, dims=[-1]) if f else x
                variants += [encode(model.aerial.encoder, torch.rot90(xf, k, dims=(-2, -1))) for k in range(4)]
            tiles.append(torch.stack(variants, dim=1))
        self.pano = torch.cat(panos)
        self.tiles = torch.cat(tiles)
        del panos, tiles
        release_freed_memory()


def _fov_masks(n: int, width: int, fov: float, fov_range: tuple[float, float], rng) -> torch.Tensor:
    """(n, width) column masks: all ones, or with probability ``fov`` a wedge centred ahead."""
    masks = torch.ones(n, width)
    for i in np.flatnonzero(rng.random(n) < fov):
        masks[i] = fov_column_mask(width, rng.uniform(*fov_range))
    return masks


def batch_inputs(cache: FeatureCache, pano_ids: np.ndarray, tile_ids: np.ndarray, cfg, rng, fov: float,
                 fov_range=(70.0, 180.0)):
    """Augmented stage-3 maps of a batch: (ground maps, G validity (B, h'*w'), tile maps)."""
    n = len(pano_ids)
    flip = rng.integers(0, 2, n)
    turn = rng.integers(0, 4, n)
    ground = cache.pano[pano_ids, flip].float()
    cols = ground.shape[-1]
    ground = torch.stack([torch.roll(ground[i], shifts=-int(turn[i]) * cols // 4, dims=-1) for i in range(n)])
    tiles = cache.tiles[tile_ids, flip * 4 + turn].float()
    masks = _fov_masks(n, cfg.ground_size[1], fov, fov_range, rng)
    s3_valid = (F.avg_pool1d(masks[:, None], cfg.stride // 2).squeeze(1) >= 0.5).float()       # (B, w3)
    ground = ground * s3_valid[:, None, None, :]
    g_valid = (F.avg_pool1d(masks[:, None], cfg.stride).squeeze(1) >= 0.5).float()             # (B, W')
    rows = cfg.ground_feature_size[0]
    return ground, g_valid.repeat(1, rows), tiles


def train_retrieval(cfg: RetrievalStageConfig, progress: bool = True) -> dict:
    """Run (or resume) the retrieval stage; returns a summary dict."""
    from unifygeo_ros.progress import tqdm

    from ..data.vigor import VigorQueryDataset, VigorReferenceDataset

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    amp_dtype = autocast_dtype(cfg.precision, device)
    model, payload, init_hash = stage_model(cfg.init, cfg.layout_channels, cfg.config)
    mcfg = model.cfg
    if cfg.reinit:                      # (a resumed run then loads its own last.pt over these)
        reinit_descriptors(model, cfg.seed)
    queries = VigorQueryDataset(cfg.data, cfg.protocol, cfg.split, cfg.cities, cfg.labels,
                                ground_size=mcfg.ground_size, aerial_size=mcfg.aerial_size)
    if len(queries) == 0:
        raise ValueError(f"{cfg.data}: no training panoramas for protocol {cfg.protocol!r}, split {cfg.split!r}")
    refs = VigorReferenceDataset(queries.index, ground_size=mcfg.ground_size, aerial_size=mcfg.aerial_size)
    positives, tiles, positions = _sampler_inputs(queries.index)
    sampler = ConflictFreeBatchSampler(positives, tiles, positions, cfg.batch_size, cfg.hard_fraction, cfg.seed)
    sampler.set_epoch(0)
    first = sum(1 for _ in sampler)
    if first < max(1, len(sampler) // 2):
        raise ValueError(f"--batch-size {cfg.batch_size}: only {first} of {len(sampler)} batches can be filled without "
                         f"false negatives (panoramas whose tiles overlap) from {len(queries)} panoramas; use a "
                         f"smaller batch or more cities")
    model = model.to(device).eval()
    t_cache = time.perf_counter()
    cache = FeatureCache(model, queries, refs, device, progress=progress, amp_dtype=amp_dtype)
    cache_s = time.perf_counter() - t_cache
    _freeze_all_but_descriptors(model)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    steps_per_epoch = len(sampler)
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, int(round(cfg.warmup_epochs * steps_per_epoch)))
    last_path = out / "last.pt"
    start_epoch, step, elapsed = resume_state(cfg.resume, last_path, mcfg.as_dict(), model, optimizer)
    log_path = out / "log.csv"
    log_file, log = open_log(log_path, cfg.resume, step, ["epoch", "step", "lr", "G", "pairs_per_s", "elapsed_s"])
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}

    epoch, stop, last_loss = start_epoch - 1, False, float("nan")
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        _set_train_mode(model)
        rng = np.random.default_rng((cfg.seed, epoch, 1))
        bar = tqdm(sampler, total=steps_per_epoch, desc=f"retrieval epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress, file=sys.stderr)
        for batch in bar:
            t0 = time.perf_counter()
            ids = np.asarray(batch)
            ground, valid, aerial = batch_inputs(cache, ids, positives[ids], mcfg, rng, cfg.fov, cfg.fov_range_deg)
            ground, valid, aerial = ground.to(device), valid.to(device), aerial.to(device)
            if cfg.feature_dropout:
                ground = F.dropout2d(ground, cfg.feature_dropout)
                aerial = F.dropout2d(aerial, cfg.feature_dropout)
            lr = learning_rate(step, total, warmup, cfg.lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(device.type, amp_dtype):
                v_g = model.ground.aggregator(model.ground.s_head(ground), valid)
                v_a = model.aerial.aggregator(model.aerial.s_head(aerial))
            loss = loss_g(v_g.float(), v_a.float(), model.logit_scale, cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, math.log(100.0))
            dt = time.perf_counter() - t0
            elapsed += dt
            step += 1
            last_loss = float(loss.detach())
            log.writerow([epoch + 1, step, f"{lr:.6g}", f"{last_loss:.5f}", f"{len(ids) / dt:.1f}", f"{elapsed:.1f}"])
            bar.set_postfix({"G": f"{last_loss:.3f}"}, refresh=False)
            if cfg.max_steps is not None and step >= cfg.max_steps:
                stop = True
                break
        log_file.flush()
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step,
                    "elapsed_s": elapsed, "model_config": mcfg.as_dict(), "stage_config": cfg.as_dict()},
                   last_path.with_suffix(".tmp"))
        last_path.with_suffix(".tmp").replace(last_path)
        if stop:
            break
    log_file.close()
    for name, p in model.named_parameters():       # the frozen part must be bit-identical
        if name in frozen and not torch.equal(frozen[name], p.detach()):
            raise RuntimeError(f"retrieval stage: frozen weight {name} changed")
    model = model.cpu().eval()
    training = dict(payload.get("training") or {})
    training["retrieval_stage"] = {
        "init": str(cfg.init), "init_model_hash": init_hash, "config": cfg.as_dict(), "steps": step,
        "epochs_done": epoch + 1, "train_seconds": round(elapsed, 1), "cache_seconds": round(cache_s, 1),
        "device": str(device), "autocast": autocast_name(amp_dtype),
        "panoramas": len(queries), "tiles": len(refs), "command": " ".join(sys.argv),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "cuda": torch.cuda.get_device_name(0) if device.type == "cuda" else None},
    }
    model_path = out / "model.pt"
    save_checkpoint(model, model_path, training=training)
    return {"model": str(model_path), "last": str(last_path), "log": str(log_path), "steps": step,
            "epochs_done": epoch + 1, "pairs": len(queries), "tiles": len(refs), "train_seconds": round(elapsed, 1),
            "cache_seconds": round(cache_s, 1), "device": str(device),
            "autocast": training["retrieval_stage"]["autocast"], "final_loss": {"G": last_loss},
            "layout_channels": mcfg.layout_channels}


def _set_train_mode(model: UnifyGeo) -> None:
    """Train mode for the trained modules only (the frozen ones keep their eval behaviour)."""
    model.eval()
    for branch in (model.ground, model.aerial):
        branch.s_head.train()
        branch.aggregator.train()


def stage_config_from_args(args) -> RetrievalStageConfig:
    """Build a :class:`RetrievalStageConfig` from ``unifygeo train --stage retrieval`` arguments."""
    if not args.init:
        raise ValueError("--stage retrieval needs --init CHECKPOINT (a trained model to start from)")
    if args.imagenet:
        raise ValueError("--stage retrieval starts from --init; --imagenet does not apply")
    if getattr(args, "memory_format", None):
        raise ValueError("--memory-format applies to the full stage only (the retrieval stage trains on cached maps)")
    return RetrievalStageConfig(
        data=args.data, out=args.out, init=args.init, config=args.config, protocol=args.protocol,
        cities=tuple(args.cities.split(",")) if args.cities else None,
        **given_options(args, "epochs", "batch_size", "lr"), weight_decay=args.weight_decay,
        hard_fraction=args.hard_fraction, fov=args.fov if args.fov is not None else 0.0, feature_dropout=args.feature_dropout,
        layout_channels=args.layout_channels, reinit=args.reinit_descriptors, seed=args.seed, device=args.device,
        precision=args.precision, max_steps=args.max_steps, resume=args.resume)
