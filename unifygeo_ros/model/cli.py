"""Model subcommands: ``model-info``, ``bench model`` (``export`` lives in :mod:`unifygeo_ros.backends.cli`)."""

from __future__ import annotations

import argparse

from ..cli import CommandError, add_json_flag, emit

PAPER_REFERENCE_PARAMETERS = 57_700_330   # state-dict values, counted by the authors' public evaluation code


def register(sub, bench_sub) -> None:
    p = sub.add_parser("model-info", help="sizes and parameter counts of a model configuration")
    p.add_argument("--config", default="paper", help="paper | vigor | small (default: paper)")
    p.add_argument("--weights", help="a unifygeo_ros checkpoint, or a state_dict in the layout of the authors' "
                                     "released VIGOR checkpoints: report its configuration instead")
    p.add_argument("--imagenet", help="a local ConvNeXt ImageNet state-dict file (timm, facebookresearch "
                                      "or torchvision layout): load it and report what was mapped")
    add_json_flag(p)
    p.set_defaults(handler=model_info_command)



def _load_model(args):
    """The model of ``--weights`` (any accepted layout), else an untrained ``--config``."""
    return _load_model_and_payload(args)[0]


def _load_model_and_payload(args):
    """(model, payload): payload is None for an untrained ``--config``."""
    from ..model_config import get_config
    from .unifygeo import UnifyGeo, load_checkpoint

    try:
        if getattr(args, "weights", None):
            return load_checkpoint(args.weights)
        return UnifyGeo(get_config(args.config)).eval(), None
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from exc


def model_info(model, imagenet: str | None = None, payload: dict | None = None) -> dict:
    from .released import RELEASED_LAYOUT

    cfg = model.cfg
    n = model.parameter_count()
    yaw = model.yaw_head_parameters()
    state = model.state_dict()
    info = {
        "config": cfg.name,
        "parameters": n,
        "parameters_without_yaw_head": n - yaw,
        "yaw_head_parameters": yaw,
        "checkpoint_tensors": len(state),                            # BatchNorm buffers included
        "checkpoint_values": sum(t.numel() for t in state.values()),
        "modules": {
            "ground_branch": sum(p.numel() for p in model.ground.parameters()),
            "aerial_branch": sum(p.numel() for p in model.aerial.parameters()),
            "decoder": sum(p.numel() for p in model.decoder.parameters()),
            "temperatures": len(model.temperature_parameters()),
        },
        "ground_input": [3, *cfg.ground_size],
        "aerial_input": [3, cfg.aerial_size, cfg.aerial_size],
        "ground_feature_map": list(cfg.ground_feature_size),
        "descriptor_dim": cfg.descriptor_dim,
        "levels": [
            {"level": level, "cells": [cells, cells], "channels": ch, "ground_descriptor_dim": ch,
             "column_channels": cc}
            for level, (cells, ch, cc) in enumerate(zip(cfg.level_cells, cfg.level_channels, cfg.column_channels))
        ],
        "D": [cfg.aerial_size, cfg.aerial_size],
        "heading_bins": cfg.heading_bins,
        "heading_bin_deg": cfg.heading_bin_deg,
        "model_hash": model.state_hash(),
    }
    if cfg.name in ("paper", "vigor"):
        info["paper_reference_parameters"] = PAPER_REFERENCE_PARAMETERS
        # Like with like: the reference counts every value of the state dict (BatchNorm buffers too).
        info["relative_difference_to_paper"] = (info["checkpoint_values"] - yaw) / PAPER_REFERENCE_PARAMETERS - 1.0
    if payload is not None:
        released = payload.get("format") == RELEASED_LAYOUT
        info["weights_layout"] = "released" if released else "unifygeo_ros"
        info["released_as"] = payload.get("released_as") if released else None
        if released:
            info["weights_sha256"] = payload.get("sha256")
    if imagenet:
        from .convnext import load_convnext_weights

        reports = {}
        for name, branch in (("ground_branch", model.ground), ("aerial_branch", model.aerial)):
            reports[name] = load_convnext_weights(branch.encoder, [branch.f_head, branch.s_head], imagenet).as_dict()
        info["imagenet"] = reports
    return info


def model_info_command(args: argparse.Namespace) -> int:
    model, payload = _load_model_and_payload(args)
    try:
        info = model_info(model, args.imagenet, payload)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from exc

    def human(r: dict) -> str:
        lines = [f"configuration      {r['config']}",
                 f"parameters         {r['parameters']:,} ({r['parameters_without_yaw_head']:,} without the "
                 f"yaw head)",
                 f"checkpoint         {r['checkpoint_tensors']} tensors, {r['checkpoint_values']:,} values"]
        if "weights_layout" in r:
            lines.append(f"weights            {r['weights_layout']} layout"
                         + (f", released as {r['released_as']}" if r.get("released_as") else ""))
        if "paper_reference_parameters" in r:
            lines.append(f"paper reference    {r['paper_reference_parameters']:,} "
                         f"({100 * r['relative_difference_to_paper']:+.3f} %)")
        lines += [f"ground input       {r['ground_input']}", f"aerial input       {r['aerial_input']}",
                  f"descriptor         {r['descriptor_dim']}-d", f"D                  {r['D']}",
                  f"heading bins       {r['heading_bins']} x {r['heading_bin_deg']:g} deg"]
        for lv in r["levels"]:
            lines.append(f"level {lv['level']}            {lv['cells'][0]}x{lv['cells'][1]} cells, "
                         f"{lv['channels']} channels, f_g {lv['column_channels']} x {r['ground_feature_map'][1]}")
        for name, rep in r.get("imagenet", {}).items():
            lines.append(f"imagenet {name}: {rep['source_format']} layout, {rep['loaded']} tensors loaded, "
                         f"{len(rep['missing'])} missing, {len(rep['unexpected'])} unexpected, "
                         f"{rep['ignored_count']} ignored")
        return "\n".join(lines)

    emit(info, args.json, human)
    return 0


