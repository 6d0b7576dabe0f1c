"""Model subcommands: ``model-info``, ``bench model`` (``export`` lives in :mod:`unifygeo_ros.backends.cli`)."""

from __future__ import annotations

import argparse

from ..cli import CommandError, add_json_flag, emit

PAPER_REFERENCE_PARAMETERS = 57_700_330   # counted by the authors' public evaluation code


def register(sub, bench_sub) -> None:
    p = sub.add_parser("model-info", help="sizes and parameter counts of a model configuration")
    p.add_argument("--config", default="paper", help="paper | small (default: paper)")
    p.add_argument("--weights", help="a unifygeo_ros checkpoint: report its configuration instead")
    p.add_argument("--imagenet", help="a local ConvNeXt ImageNet state-dict file (timm, facebookresearch "
                                      "or torchvision layout): load it and report what was mapped")
    add_json_flag(p)
    p.set_defaults(handler=model_info_command)



def _load_model(args):
    from ..model_config import get_config
    from .unifygeo import UnifyGeo, load_checkpoint

    try:
        if getattr(args, "weights", None):
            model, _ = load_checkpoint(args.weights)
            return model
        return UnifyGeo(get_config(args.config)).eval()
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from exc


def model_info(model, imagenet: str | None = None) -> dict:
    cfg = model.cfg
    n = model.parameter_count()
    yaw = model.yaw_head_parameters()
    info = {
        "config": cfg.name,
        "parameters": n,
        "parameters_without_yaw_head": n - yaw,
        "yaw_head_parameters": yaw,
        "modules": {
            "ground_branch": sum(p.numel() for p in model.ground.parameters()),
            "aerial_branch": sum(p.numel() for p in model.aerial.parameters()),
            "decoder": sum(p.numel() for p in model.decoder.parameters()),
            "temperatures": 4,
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
    if cfg.name == "paper":
        info["paper_reference_parameters"] = PAPER_REFERENCE_PARAMETERS
        info["relative_difference_to_paper"] = (n - yaw) / PAPER_REFERENCE_PARAMETERS - 1.0
    if imagenet:
        from .convnext import load_convnext_weights

        reports = {}
        for name, branch in (("ground_branch", model.ground), ("aerial_branch", model.aerial)):
            reports[name] = load_convnext_weights(branch.encoder, [branch.f_head, branch.s_head], imagenet).as_dict()
        info["imagenet"] = reports
    return info


def model_info_command(args: argparse.Namespace) -> int:
    model = _load_model(args)
    try:
        info = model_info(model, args.imagenet)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from exc

    def human(r: dict) -> str:
        lines = [f"configuration      {r['config']}",
                 f"parameters         {r['parameters']:,} ({r['parameters_without_yaw_head']:,} without the "
                 f"yaw head)"]
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


