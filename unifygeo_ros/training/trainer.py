"""``unifygeo train``: the published recipe on a VIGOR-layout root (real or synthetic).

AdamW (lr 4.5e-4, weight decay 0.04 on weight matrices), one warm-up epoch then cosine
decay, label smoothing 0.1, synchronised flip and 90-degree rotation, colour jitter, grid
and coarse dropout (see :mod:`.augment`), batches without false negatives and with
geographic hard negatives (see :mod:`.sampler`). CPU or CUDA is chosen automatically;
the forward pass runs in mixed precision on CUDA and on a CPU with AMX (bf16; see
:func:`autocast_dtype`). A checkpoint (``last.pt``, everything
needed to resume) is written after every epoch; ``model.pt`` at the end holds the weights
in the checkpoint format the rest of the package loads. ``log.csv`` records the loss
terms (and TensorBoard too where it is installed).

Entry point: :func:`train` with a :class:`TrainConfig`.
"""

from __future__ import annotations

import csv
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..inference.heading import true_alignment
from ..model.heading import teacher_prior
from ..model.losses import LossConfig, unifygeo_loss
from ..model.ops import pick_device
from ..model.unifygeo import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    UnifyGeo,
    load_checkpoint,
    save_checkpoint,
)
from ..model_config import get_config
from .augment import AugmentConfig, PairAugment
from .sampler import ConflictFreeBatchSampler

LOSS_TERMS = ("total", "D", "G", "M", "R", "yaw")


@dataclass
class TrainConfig:
    data: str
    out: str
    config: str = "small"
    epochs: int = 20
    batch_size: int = 32
    lr: float = 4.5e-4
    weight_decay: float = 0.04
    warmup_epochs: float = 1.0
    protocol: str = "same_area"
    split: str = "train"
    cities: tuple[str, ...] | None = None
    labels: str = "auto"
    seed: int = 0
    workers: int | None = None          # DataLoader workers (default: 0 on CPU with a cache)
    cache: str = "auto"                 # keep the resized pairs in memory: auto | yes | no
    hard_fraction: float = 0.5          # share of geographic hard-negative batches after epoch 1
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    imagenet: str | None = None         # ConvNeXt ImageNet weights for both encoders
    init: str | None = None             # start from a unifygeo_ros checkpoint
    device: str = "auto"
    precision: str = "auto"             # auto | fp32 | bf16 | fp16 (see autocast_dtype)
    memory_format: str = "channels_last"  # of the model and the batches (see torch_memory_format)
    grad_clip: float = 5.0
    max_steps: int | None = None        # stop after this many optimizer steps (smoke runs)
    resume: bool = False

    def as_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = self.augment.as_dict()
        d["loss"] = self.loss.as_dict()
        return d


def release_freed_memory() -> None:
    """Hand the heap's freed pages back to the system (glibc only; elsewhere a no-op).

    Decoding and resizing thousands of images leaves the C heap fragmented: caching the 30,600
    pairs of 18 cities held about four times the cache's own size (19 against 4.5 GB) until trimmed.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):   # not glibc
        pass


class PairStore(torch.utils.data.Dataset):
    """Training pairs, optionally cached in memory as uint8, augmented per (epoch, index)."""

    def __init__(self, base, augment: PairAugment, seed: int, cache: bool, progress: bool = True):
        self.base = base
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.cache = None
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        if cache:
            from unifygeo_ros.progress import tqdm

            # The images go into two preallocated uint8 blocks (one allocation each): a list of
            # per-pair tensors fragments the heap to several times the images' size.
            self.cache = []
            self.images: dict[str, torch.Tensor] = {}
            for i in tqdm(range(len(base)), desc="caching pairs", unit="pair", disable=not progress, file=sys.stderr):
                s = base[i]
                for key in ("ground", "aerial"):
                    if key not in self.images:
                        self.images[key] = torch.empty((len(base), *s[key].shape), dtype=torch.uint8)
                    self.images[key][i] = (s.pop(key) * 255).round()
                self.cache.append(s)
            release_freed_memory()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        if self.cache is not None:
            s = dict(self.cache[i])
            s["ground"] = self.images["ground"][i].float() / 255.0
            s["aerial"] = self.images["aerial"][i].float() / 255.0
        else:
            s = self.base[i]
        s = self.augment(s, np.random.default_rng((self.seed, self.epoch, i)))
        s["ground"] = (s["ground"] - self.mean) / self.std
        s["aerial"] = (s["aerial"] - self.mean) / self.std
        return {k: s[k] for k in ("ground", "aerial", "pixel", "yaw_deg", "column_mask", "mpp")}


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX, Linux ``amx_bf16``
    flag), and the process may use its tile registers. oneDNN then runs bf16 convolutions
    and matrix products on AMX; without it bf16 on a CPU is emulated and slower than fp32."""
    try:
        with open(cpuinfo) as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    if "amx_bf16" not in flags.split():
        return False
    init = getattr(getattr(torch._C, "_cpu", None), "_init_amx", None)   # asks the kernel for the tiles
    return bool(init()) if init is not None else True


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype of the mixed-precision forward pass, or ``None`` for plain fp32.

    ``auto``: on CUDA bf16 where supported, else fp16 (with loss scaling); on a CPU bf16
    where it has AMX (about twice the fp32 step rate on the development machine, see the
    model card), else fp32. ``bf16`` / ``fp16`` force that dtype and fail where the device
    cannot run it; the weights, the optimizer and the losses stay fp32 in every case."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    cuda = device.type == "cuda"
    if precision == "fp32":
        return None
    if precision == "auto":
        if cuda:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_amx() else None
    if precision == "fp16":
        if not cuda:
            raise ValueError(f"precision fp16: mixed fp16 training needs CUDA, the device is {device.type} "
                             "(use bf16 or fp32)")
        return torch.float16
    if cuda and not torch.cuda.is_bf16_supported():
        raise ValueError("precision bf16: this GPU has no bf16 support (use fp16 or fp32)")
    if device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise ValueError("precision bf16: this CPU has no bf16 support (AVX-512 BF16 or AMX); use fp32")
    return torch.bfloat16


def autocast(device_type: str, amp_dtype: torch.dtype | None):
    """The autocast context of :func:`autocast_dtype`'s choice (a no-op for ``None``)."""
    return torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)


def autocast_name(amp_dtype: torch.dtype | None) -> str:
    """How summaries and checkpoints record the choice: ``bfloat16``, ``float16`` or ``fp32``."""
    return str(amp_dtype).replace("torch.", "") if amp_dtype is not None else "fp32"


def forward_and_loss(model: UnifyGeo, ground, aerial, column_mask, rows, cols, field_yaw, k_true,
                     loss: LossConfig, amp_dtype: torch.dtype | None = None) -> dict:
    """One batch's forward pass (teacher-forced at the true alignment ``k_true``), in
    ``amp_dtype`` autocast where given, and its loss terms, computed in fp32."""
    device_type = ground.device.type
    with autocast(device_type, amp_dtype):
        outputs = model(ground, aerial, column_mask, teacher_prior(k_true, model.cfg))
    outputs = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else
                   [t.float() for t in v] if isinstance(v, list) else v) for k, v in outputs.items()}
    return unifygeo_loss(outputs, model, rows, cols, field_yaw, k_true, loss, model.cfg.heading_subdivisions)


MEMORY_FORMATS = ("channels_last", "contiguous")


def torch_memory_format(name: str) -> torch.memory_format:
    """The layout of the convolutions' tensors during training: ``channels_last`` (NHWC,
    the default) or ``contiguous`` (NCHW). The arithmetic is the same; NHWC spares the
    ConvNeXt blocks' permutes around their channel MLPs a copy and suits oneDNN and tensor
    cores (`unifygeo bench train --memory-formats` compares them). Checkpoints are always
    written contiguous."""
    if name not in MEMORY_FORMATS:
        raise ValueError(f"memory format: expected one of {', '.join(MEMORY_FORMATS)}, got {name!r}")
    return torch.channels_last if name == "channels_last" else torch.contiguous_format


def _sampler_inputs(index) -> tuple[np.ndarray, list[set], np.ndarray]:
    """Positive tile, tiles containing the camera, and positions in metres (cities apart)."""
    positives, tiles, positions = [], [], []
    cities = {c: i for i, c in enumerate(sorted({r.city for r in index.panoramas}))}
    for rec in index.panoramas:
        sats = [int(s) for s in rec.satellites]
        positives.append(sats[0])
        tiles.append(set(sats))
        lat = math.radians(rec.lat)
        positions.append((cities[rec.city] * 1e7 + rec.lon * 111_320.0 * math.cos(lat), rec.lat * 110_574.0))
    return np.asarray(positives), tiles, np.asarray(positions)


def _param_groups(model: torch.nn.Module, weight_decay: float):
    """AdamW groups of the trainable parameters: weight decay on matrices and kernels only."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _truncate_log(log_path: Path, last_step: int) -> None:
    """Drop the CSV rows after ``last_step`` (written by an epoch that was interrupted
    before its checkpoint), so that a resumed run's log has each step once."""
    with log_path.open(newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if len(r) > 1 and r[1].isdigit() and int(r[1]) <= last_step]
    if len(kept) != len(rows):
        with log_path.open("w", newline="") as f:
            csv.writer(f).writerows(kept)


def resume_state(resume: bool, last_path: Path, model_config: dict, model, optimizer, scaler=None
                 ) -> tuple[int, int, float]:
    """(first epoch, step, elapsed seconds): zeros, or restored from ``last_path`` with the
    model's, optimizer's (and scaler's) state when resuming."""
    if not resume:
        return 0, 0, 0.0
    if not last_path.is_file():
        raise FileNotFoundError(f"--resume: no {last_path} to resume from")
    state = torch.load(last_path, map_location="cpu", weights_only=True)
    if state["model_config"] != model_config:
        raise ValueError(f"--resume: {last_path} was trained with another model configuration")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None:
        scaler.load_state_dict(state["scaler"])
    return state["epoch"] + 1, state["step"], state["elapsed_s"]


def open_log(log_path: Path, resume: bool, step: int, header: list[str]):
    """The CSV log (file, writer): new with ``header``, or appended to when resuming, after
    dropping the rows an interrupted epoch wrote after the checkpoint."""
    new_log = not (resume and log_path.is_file())
    if not new_log:
        _truncate_log(log_path, step)
    log_file = log_path.open("w" if new_log else "a", newline="")
    log = csv.writer(log_file)
    if new_log:
        log.writerow(header)
    return log_file, log


def build_model(cfg: TrainConfig) -> UnifyGeo:
    if cfg.init:
        model, _ = load_checkpoint(cfg.init)
        if model.cfg.name != get_config(cfg.config).name:
            raise ValueError(f"--init {cfg.init} holds a {model.cfg.name!r} model, expected {cfg.config!r}")
        return model
    model_cfg = get_config(cfg.config)
    if cfg.loss.weight_yaw == 0 and model_cfg.yaw_head:     # no yaw term: no yaw head to leave untrained
        model_cfg = model_cfg.with_(yaw_head=False)
    model = UnifyGeo(model_cfg)
    if cfg.imagenet:
        from ..model.convnext import load_convnext_weights

        for branch in (model.ground, model.aerial):
            report = load_convnext_weights(branch.encoder, [branch.f_head, branch.s_head], cfg.imagenet)
            if report.missing:
                raise ValueError(f"--imagenet {cfg.imagenet}: {len(report.missing)} tensors missing, e.g. "
                                 f"{report.missing[:3]}")
    return model


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Run (or resume) a training; returns a summary dict."""
    from unifygeo_ros.progress import tqdm

    from ..data.vigor import VigorPairDataset

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = pick_device(cfg.device)
    model_cfg = get_config(cfg.config)
    base = VigorPairDataset(cfg.data, cfg.protocol, cfg.split, cfg.cities, cfg.labels,
                            ground_size=model_cfg.ground_size, aerial_size=model_cfg.aerial_size, normalize=False)
    if len(base) == 0:
        raise ValueError(f"{cfg.data}: no training pairs for protocol {cfg.protocol!r}, split {cfg.split!r}")
    memory_format = torch_memory_format(cfg.memory_format)
    # Before caching: a bad --init or --imagenet fails at once.
    model = build_model(cfg).to(device, memory_format=memory_format)
    model_cfg = model.cfg                   # without the yaw head when the yaw term is off
    pair_bytes = 3 * (model_cfg.ground_size[0] * model_cfg.ground_size[1] + model_cfg.aerial_size ** 2)
    cache = cfg.cache == "yes" or (cfg.cache == "auto" and len(base) * pair_bytes < 4 * 2 ** 30)
    store = PairStore(base, PairAugment(cfg.augment), cfg.seed, cache, progress)
    positives, tiles, positions = _sampler_inputs(base.index)
    sampler = ConflictFreeBatchSampler(positives, tiles, positions, cfg.batch_size, cfg.hard_fraction, cfg.seed)
    workers = cfg.workers if cfg.workers is not None else (0 if cache or device.type == "cpu" else min(8, os.cpu_count() or 1))

    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    amp_dtype = autocast_dtype(cfg.precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    steps_per_epoch = len(sampler)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = max(1, int(round(cfg.warmup_epochs * steps_per_epoch)))
    last_path = out / "last.pt"
    start_epoch, step, elapsed = resume_state(cfg.resume, last_path, model_cfg.as_dict(), model, optimizer, scaler)
    log_path = out / "log.csv"
    log_file, log = open_log(log_path, cfg.resume, step, ["epoch", "step", "lr", *LOSS_TERMS, "pairs_per_s", "elapsed_s"])
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional
        tb = SummaryWriter(str(out / "tensorboard"))
    except Exception:  # tensorboard not installed
        tb = None

    last_terms: dict[str, float] = {}
    stop = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        sampler.set_epoch(epoch)
        store.epoch = epoch
        loader = torch.utils.data.DataLoader(store, batch_sampler=sampler, num_workers=workers,
                                             pin_memory=device.type == "cuda")
        sums = {k: 0.0 for k in LOSS_TERMS}
        count = 0
        bar = tqdm(loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress, file=sys.stderr)
        for batch in bar:
            t0 = time.perf_counter()
            lr = learning_rate(step, total_steps, warmup, cfg.lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            k_true, field_yaw = true_alignment(batch["yaw_deg"].numpy(), model_cfg, whole_columns=True)
            k_true = torch.from_numpy(np.asarray(k_true)).to(device)
            field_yaw = torch.from_numpy(np.asarray(field_yaw, dtype=np.float32)).to(device)
            ground = batch["ground"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
            aerial = batch["aerial"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
            mask = batch["column_mask"].to(device)
            rows, cols = batch["pixel"][:, 0].to(device), batch["pixel"][:, 1].to(device)
            terms = forward_and_loss(model, ground, aerial, mask, rows, cols, field_yaw, k_true, cfg.loss, amp_dtype)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms["total"]).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            with torch.no_grad():
                for s in model.temperature_parameters():
                    s.clamp_(0.0, math.log(100.0))      # temperature at most 100, as in CLIP
            dt = time.perf_counter() - t0
            elapsed += dt
            step += 1
            last_terms = {k: float(v.detach()) for k, v in terms.items()}
            for k in LOSS_TERMS:
                sums[k] += last_terms.get(k, 0.0)
            count += 1
            log.writerow([epoch + 1, step, f"{lr:.6g}", *(f"{last_terms.get(k, 0.0):.5f}" for k in LOSS_TERMS),
                          f"{len(ground) / dt:.2f}", f"{elapsed:.1f}"])
            if tb is not None:
                for k, v in last_terms.items():
                    tb.add_scalar(f"loss/{k}", v, step)
                tb.add_scalar("lr", lr, step)
            bar.set_postfix({k: f"{last_terms.get(k, 0.0):.3g}" for k in LOSS_TERMS}, refresh=False)
            if cfg.max_steps is not None and step >= cfg.max_steps:
                stop = True
                break
        log_file.flush()
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                    "epoch": epoch, "step": step, "elapsed_s": elapsed, "model_config": model_cfg.as_dict(),
                    "train_config": cfg.as_dict(), "epoch_mean_loss": {k: v / max(count, 1) for k, v in sums.items()}},
                   last_path.with_suffix(".tmp"))
        last_path.with_suffix(".tmp").replace(last_path)
        if stop:
            break
    log_file.close()
    if tb is not None:
        tb.close()
    model_path = out / "model.pt"
    training = {
        "data": str(cfg.data), "config": cfg.as_dict(), "steps": step, "epochs_done": epoch + 1,
        "train_seconds": round(elapsed, 1), "device": str(device),
        "autocast": autocast_name(amp_dtype),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "cuda": torch.cuda.get_device_name(0) if device.type == "cuda" else None},
        "command": " ".join(sys.argv), "pairs": len(store), "cached": cache,
        # Ground metres per pixel of the aerial input the model learned on: a database must
        # resample its orthophotos to this (median over the training tiles).
        "aerial_mpp": float(np.median([base.tile_mpp(int(r.satellites[0])) for r in base.index.panoramas])),
    }
    save_checkpoint(model.cpu().eval(), model_path, training=training)
    return {"model": str(model_path), "last": str(last_path), "log": str(log_path), "steps": step,
            "epochs_done": epoch + 1, "pairs": len(store), "train_seconds": round(elapsed, 1),
            "device": str(device), "autocast": training["autocast"], "final_loss": last_terms}


def given_options(args, *names: str) -> dict:
    """The options among ``names`` given on the command line (``None`` = not given), so that
    the stage's configuration keeps its own defaults for the others."""
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


#: The full stage's defaults per model configuration: ``paper`` and ``vigor`` follow the
#: paper (Sec. IV-A: 40 epochs, batch 64, L = L_D + 100 L_G + 10 L_M + L_R, no yaw term);
#: ``small`` keeps the shipped model's recipe (scripts/train_shipped_model.sh).
RECIPES = {
    "paper": {"epochs": 40, "batch_size": 64, "loss_weights": "1,100,10,1,0"},
    "vigor": {"epochs": 40, "batch_size": 64, "loss_weights": "1,100,10,1,0"},
    "small": {"epochs": 20, "batch_size": 32, "loss_weights": "1,100,10,1,1"},
}


#: The limited-field-of-view stage (``--stage fov``): the full recipe continued from ``--init``
#: (a trained model) at a third of its learning rate, a short warm-up, on pinhole views (35 %),
#: camera rigs (25 %) and panoramas (the rest, a tenth of them as a wedge of columns), half of
#: them with a random heading, so that the panoramas keep what they learned.
FOV_STAGE = {"epochs": 2, "lr": 1.5e-4, "warmup_epochs": 0.25, "unknown_heading": 0.5, "fov": 0.1,
             "pinhole": 0.35, "rig": 0.25, "heading_term": 3.0}
#: augmentation and loss defaults of the full stage (the options not given)
FULL_STAGE = {"unknown_heading": 0.0, "fov": 0.0, "pinhole": 0.0, "rig": 0.0, "heading_term": 1.0}


def recipe(config: str) -> dict:
    """The full stage's default epochs, batch size and loss weights of model ``config``."""
    return RECIPES[get_config(config).name]


def _fov_range(text: str | None) -> tuple[float, float]:
    if text is None:
        return AugmentConfig.pinhole_fov_range_deg
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--pinhole-fov: expected MIN,MAX in degrees, got {text!r}") from None
    if not 1.0 <= lo <= hi < 180.0:
        raise ValueError(f"--pinhole-fov: expected 1 <= MIN <= MAX < 180 degrees, got {text!r}")
    return lo, hi


def config_from_args(args) -> TrainConfig:
    """Build a :class:`TrainConfig` from ``unifygeo train`` arguments; the options not given
    take the model configuration's :data:`RECIPES` defaults."""
    for flag, given in (("--reinit-descriptors", getattr(args, "reinit_descriptors", False)),
                        ("--layout-channels", getattr(args, "layout_channels", None) is not None)):
        if given:
            raise ValueError(f"{flag} applies to --stage retrieval only")
    fov_stage = getattr(args, "stage", "full") == "fov"
    if fov_stage and not args.init:
        raise ValueError("--stage fov continues a trained model: expected --init CHECKPOINT (e.g. the shipped "
                         "unifygeo_ros/weights/small.pt)")
    stage = FOV_STAGE if fov_stage else FULL_STAGE
    prob = {k: getattr(args, k, None) if getattr(args, k, None) is not None else stage[k]
            for k in ("unknown_heading", "fov", "pinhole", "rig", "heading_term")}
    for k in ("unknown_heading", "fov", "pinhole", "rig"):
        if not 0.0 <= prob[k] <= 1.0:
            raise ValueError(f"--{k.replace('_', '-')}: expected a probability in [0, 1], got {prob[k]}")
    if prob["pinhole"] + prob["rig"] > 1.0:
        raise ValueError(f"--pinhole + --rig: expected at most 1 together, got {prob['pinhole'] + prob['rig']}")
    aug = AugmentConfig(unknown_heading=prob["unknown_heading"], fov=prob["fov"], pinhole=prob["pinhole"],
                        rig=prob["rig"], pinhole_fov_range_deg=_fov_range(getattr(args, "pinhole_fov", None)))
    defaults = dict(recipe(args.config))
    if fov_stage:
        defaults.update(epochs=FOV_STAGE["epochs"])
    schedule = {"lr": FOV_STAGE["lr"], "warmup_epochs": FOV_STAGE["warmup_epochs"]} if fov_stage else {}
    schedule.update(given_options(args, "lr"))
    weights = args.loss_weights if args.loss_weights is not None else defaults["loss_weights"]
    try:
        wd, wg, wm, wr, wy = (float(v) for v in weights.split(","))
    except ValueError:
        raise ValueError(f"--loss-weights: expected five numbers D,G,M,R,YAW, got {weights!r}") from None
    loss = LossConfig(weight_d=wd, weight_g=wg, weight_m=wm, weight_r=wr, weight_yaw=wy,
                      heading_term=prob["heading_term"])
    cfg = TrainConfig(data=args.data, out=args.out, config=args.config,
                      epochs=args.epochs if args.epochs is not None else defaults["epochs"],
                      batch_size=args.batch_size if args.batch_size is not None else defaults["batch_size"],
                      **schedule, weight_decay=args.weight_decay,
                      protocol=args.protocol, cities=tuple(args.cities.split(",")) if args.cities else None,
                      seed=args.seed, workers=args.workers, cache=args.cache, hard_fraction=args.hard_fraction,
                      augment=aug, loss=loss, imagenet=args.imagenet, init=args.init, device=args.device,
                      max_steps=args.max_steps, resume=args.resume, precision=args.precision,
                      **given_options(args, "memory_format"))
    return cfg
