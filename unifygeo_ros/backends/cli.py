"""``unifygeo export``: the three ONNX modules (and TensorRT engines where TensorRT is installed)."""

from __future__ import annotations

import argparse

from ..cli import CommandError, add_json_flag, emit


def register(sub, bench_sub) -> None:
    p = sub.add_parser("export", help="export the ground branch, aerial branch and decoder to ONNX "
                                      "(and build TensorRT engines with --tensorrt)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="a unifygeo_ros checkpoint")
    src.add_argument("--config", help="export an untrained model of this configuration (small | paper | vigor)")
    p.add_argument("--out", required=True, help="output folder (e.g. engines/)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime parity check")
    p.add_argument("--tensorrt", action="store_true",
                   help="also build TensorRT engines (cached by model hash, TensorRT version and GPU)")
    p.add_argument("--fp16", action="store_true", help="TensorRT engines in fp16")
    add_json_flag(p)
    p.set_defaults(handler=export_command)


def export_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..log import setup_logging
    from ..model.cli import _load_model
    from .availability import tensorrt_unavailable_reason
    from .export import export_onnx, onnx_parity

    setup_logging()
    model = _load_model(args)
    try:
        paths = export_onnx(model, args.out, args.opset)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    result: dict = {"out": str(args.out), "files": {k: str(p) for k, p in paths.items()},
                    "model_hash": model.state_hash(), "opset": args.opset}
    if not args.no_check:
        diffs = onnx_parity(model, paths)
        worst = max(v for k, v in diffs.items() if not k.endswith("_rel"))
        result["parity_max_abs_diff"] = worst
        result["parity_ok"] = worst <= 1e-4
    if args.tensorrt:
        reason = tensorrt_unavailable_reason()
        if reason is not None:
            raise CommandError(f"--tensorrt: {reason}; the ONNX files are written to {args.out}")
        from .tensorrt_backend import ensure_engines

        engines = ensure_engines(Path(args.out), result["model_hash"], args.fp16)
        result["engines"] = {k: str(p) for k, p in engines.items()}
    emit(result, args.json)
    return 0 if result.get("parity_ok", True) else 1
