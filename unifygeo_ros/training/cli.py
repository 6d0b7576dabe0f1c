"""``unifygeo train``."""

from __future__ import annotations

from ..cli import CommandError, add_json_flag, comma_list, emit


def register(sub, bench_sub) -> None:
    p = sub.add_parser("train", help="train UnifyGeo on a VIGOR-layout root (real VIGOR or `sim vigor` exports)")
    p.add_argument("--data", required=True, help="VIGOR root (splits/ or splits__corrected/)")
    p.add_argument("--out", required=True, help="run folder: last.pt (resume), model.pt, log.csv")
    p.add_argument("--config", default="small",
                   help="small | paper | vigor (default small); paper and vigor default to the paper's recipe "
                        "(40 epochs, batch 64, losses 1,100,10,1 without the yaw term)")
    p.add_argument("--protocol", default="same_area", choices=["same_area", "cross_area"],
                   help="same_area: *_balanced_train lists; cross_area: pano_label_balanced of the train cities")
    p.add_argument("--cities", help="comma-separated cities (default: the protocol's train cities or all)")
    p.add_argument("--stage", default="full", choices=["full", "retrieval", "fov"],
                   help="full: the published recipe; retrieval: retrain the global descriptors (S-heads, "
                        "aggregators with a layout term) on the frozen encoders of --init (see "
                        "training/retrieval_stage.py); fov: continue the full recipe from --init on pinhole "
                        "views and camera rigs mixed with panoramas (the limited-field-of-view stage, see "
                        "docs/training.md)")
    p.add_argument("--epochs", type=int, default=None,
                   help="default 40 (paper, vigor), 20 (small, and the retrieval stage), 2 (the fov stage)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default 64 (paper, vigor), 32 (small), 256 (retrieval stage)")
    p.add_argument("--lr", type=float, default=None,
                   help="default 4.5e-4 (full), 1e-3 (retrieval), 1.5e-4 (fov)")
    p.add_argument("--layout-channels", type=int, default=None,
                   help="retrieval stage: channels of the descriptors' layout term (default: the model's, else 32)")
    p.add_argument("--reinit-descriptors", action="store_true",
                   help="retrieval stage: start the S-heads and aggregators from fresh weights (seeded) instead of "
                        "those of --init")
    p.add_argument("--feature-dropout", type=float, default=0.1,
                   help="retrieval stage: channel dropout on the cached encoder maps")
    p.add_argument("--weight-decay", type=float, default=0.04,
                   help="AdamW weight decay on weight matrices and kernels (default 0.04)")
    p.add_argument("--unknown-heading", type=float, default=None, metavar="P",
                   help="probability of a random panorama heading (yaw target rolled with it); default 0, "
                        "0.5 in the fov stage")
    p.add_argument("--fov", type=float, default=None, metavar="P",
                   help="probability of a limited field of view (random 70-180 deg wedge of columns); default 0, "
                        "0.1 in the fov stage")
    p.add_argument("--pinhole", type=float, default=None, metavar="P",
                   help="probability of a pinhole view (random 60-120 deg horizontal field of view, 4:3 to 16:9, "
                        "placed in the panorama as the localizer places a pinhole image); default 0, 0.35 in the "
                        "fov stage")
    p.add_argument("--rig", type=float, default=None, metavar="P",
                   help="probability of a camera rig (front + back, front + sides, or four pinhole views a "
                        "quarter turn apart); default 0, 0.25 in the fov stage")
    p.add_argument("--pinhole-fov", default=None, metavar="MIN,MAX",
                   help="horizontal field of view range of the pinhole views and rigs in degrees (default 60,120)")
    p.add_argument("--loss-weights", default=None, metavar="D,G,M,R,YAW",
                   help="weights of L_D, L_G, L_M, L_R, L_yaw (yaw: ours); default 1,100,10,1,0 (paper, vigor: "
                        "the paper's, and the model has no yaw head) or 1,100,10,1,1 (small); a YAW weight of 0 "
                        "builds the model without its yaw head")
    p.add_argument("--heading-term", type=float, default=None,
                   help="weight of the alignment cross-entropy inside L_yaw (default 1; 3 in the fov stage, the "
                        "shipped model's)")
    p.add_argument("--hard-fraction", type=float, default=0.5,
                   help="share of geographic hard-negative batches after the first epoch")
    p.add_argument("--imagenet", help="local ConvNeXt ImageNet weights for both encoders (the paper's "
                                      "initialisation; without it the weights start from --seed)")
    p.add_argument("--init", help="start from this unifygeo_ros checkpoint")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="forward pass: auto = bf16 (else fp16) on CUDA, bf16 on a CPU with AMX, else fp32")
    p.add_argument("--memory-format", default=None, choices=["channels_last", "contiguous"],
                   help="full stage: layout of the model and batches (default channels_last, NHWC, faster; "
                        "the checkpoints are the same either way)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers (default: 0 on a CPU or with the cache, else up to 8)")
    p.add_argument("--cache", default="auto", choices=["auto", "yes", "no"],
                   help="keep resized pairs in memory (auto: when under 4 GiB)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, batches and augmentations (default 0)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    add_json_flag(p)
    p.set_defaults(handler=train_command)

    b = bench_sub.add_parser("train", help="training step time per precision (fp32, bf16, fp16) on random batches")
    b.add_argument("--config", default="small", help="small | paper | vigor (default small)")
    b.add_argument("--batch-size", type=int, default=32, help="pairs per step (default 32)")
    b.add_argument("--steps", type=int, default=8, help="timed steps per precision (default 8)")
    b.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    b.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16, auto")
    b.add_argument("--memory-formats", default="channels_last",
                   help="comma-separated: channels_last (the training's default), contiguous; each one after the "
                        "first is reported as 'PRECISION FORMAT'")
    b.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    add_json_flag(b)
    b.set_defaults(handler=bench_train_command)


def bench_train_command(args) -> int:
    from .bench import bench_training

    try:
        result = bench_training(args.config, args.batch_size, args.steps, args.warmup,
                                tuple(comma_list(args.precisions, "--precisions")), args.device,
                                memory_formats=tuple(comma_list(args.memory_formats, "--memory-formats")))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc

    def human(r: dict) -> str:
        lines = [f"training step, {r['config']}, batch {r['batch_size']}, {r['device']} ({r['threads']} threads), "
                 f"median of {r['steps']}:"]
        for name, p in r["precisions"].items():
            lines.append(f"  {name:5s} " + (f"skipped: {p['skipped']}" if "skipped" in p else
                         f"{p['median_step_s']:.3f} s/step, {p['pairs_per_s']:.1f} pairs/s"
                         + (f", x{p['speedup_vs_fp32']:.2f} vs fp32" if "speedup_vs_fp32" in p else "")))
        return "\n".join(lines)

    emit(result, args.json, human)
    return 0


def train_command(args) -> int:
    from ..data.vigor import VigorFormatError
    from .trainer import config_from_args, train

    try:
        if args.stage == "retrieval":
            from .retrieval_stage import stage_config_from_args, train_retrieval

            summary = train_retrieval(stage_config_from_args(args), progress=True)
        else:
            summary = train(config_from_args(args), progress=True)
    except (ValueError, FileNotFoundError, VigorFormatError) as exc:
        raise CommandError(str(exc)) from exc

    def human(r: dict) -> str:
        loss = ", ".join(f"{k} {v:.3f}" for k, v in r["final_loss"].items())
        return (f"trained {r['steps']} steps ({r['epochs_done']} epochs, {r['pairs']} pairs) on {r['device']}"
                f"{' (' + r['autocast'] + ' autocast)' if r.get('autocast', 'fp32') != 'fp32' else ''} in "
                f"{r['train_seconds']:.0f} s\nlast losses: {loss}\nmodel: {r['model']}\nresume state: {r['last']}")

    emit(summary, args.json, human)
    return 0
