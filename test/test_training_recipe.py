"""The defaults of ``unifygeo train`` per model configuration: the paper's recipe for ``paper`` and
``vigor``, the shipped model's for ``small``; a ConvNeXt-Tiny ImageNet file initialises ``vigor``."""

from __future__ import annotations

import argparse

import pytest
import torch

from unifygeo_ros.training import cli as train_cli
from unifygeo_ros.training.trainer import build_model, config_from_args


def _args(*argv: str):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    train_cli.register(sub, argparse.ArgumentParser().add_subparsers())
    return parser.parse_args(["train", "--data", "d", "--out", "o", *argv])


@pytest.mark.parametrize("config", ["paper", "vigor"])
def test_paper_and_vigor_default_to_the_papers_recipe(config):
    cfg = config_from_args(_args("--config", config))
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.warmup_epochs) == (40, 64, 4.5e-4, 0.04, 1.0)
    loss = cfg.loss
    assert (loss.weight_d, loss.weight_g, loss.weight_m, loss.weight_r, loss.weight_yaw) == (1, 100, 10, 1, 0)
    assert cfg.augment.unknown_heading == 0 and cfg.augment.fov == 0
    assert cfg.imagenet is None


def test_small_keeps_the_shipped_models_defaults():
    cfg = config_from_args(_args())
    assert cfg.config == "small"
    assert (cfg.epochs, cfg.batch_size) == (20, 32)
    assert cfg.loss.weight_yaw == 1


def test_given_options_replace_the_recipe():
    cfg = config_from_args(_args("--config", "paper", "--epochs", "3", "--batch-size", "8",
                                 "--loss-weights", "1,100,10,1,2"))
    assert (cfg.epochs, cfg.batch_size, cfg.loss.weight_yaw) == (3, 8, 2)


def test_without_the_yaw_term_the_paper_model_has_no_yaw_head():
    plain = build_model(config_from_args(_args("--config", "paper")))
    assert plain.cfg.name == "paper" and not plain.cfg.yaw_head and plain.decoder.yaw_head is None
    with_yaw = build_model(config_from_args(_args("--config", "paper", "--loss-weights", "1,100,10,1,1")))
    assert with_yaw.cfg.yaw_head
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(with_yaw) > n(plain)


def _timm_convnext_tiny(seed: int = 0) -> dict[str, torch.Tensor]:
    """A ConvNeXt-Tiny state dict in timm's layout (as convnext_tiny.fb_in22k_ft_in1k_384), seeded."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: 0.02 * torch.randn(*s, generator=gen)  # noqa: E731
    dims, depths = (96, 192, 384, 768), (3, 3, 9, 3)
    sd = {"stem.0.weight": r(96, 3, 4, 4), "stem.0.bias": r(96), "stem.1.weight": r(96), "stem.1.bias": r(96)}
    for s in range(4):
        if s:
            sd.update({f"stages.{s}.downsample.0.weight": r(dims[s - 1]), f"stages.{s}.downsample.0.bias": r(dims[s - 1]),
                       f"stages.{s}.downsample.1.weight": r(dims[s], dims[s - 1], 2, 2),
                       f"stages.{s}.downsample.1.bias": r(dims[s])})
        d = dims[s]
        for b in range(depths[s]):
            p = f"stages.{s}.blocks.{b}."
            sd.update({p + "conv_dw.weight": r(d, 1, 7, 7), p + "conv_dw.bias": r(d), p + "norm.weight": r(d),
                       p + "norm.bias": r(d), p + "mlp.fc1.weight": r(4 * d, d), p + "mlp.fc1.bias": r(4 * d),
                       p + "mlp.fc2.weight": r(d, 4 * d), p + "mlp.fc2.bias": r(d), p + "gamma": r(d)})
    sd.update({"head.norm.weight": r(768), "head.norm.bias": r(768), "head.fc.weight": r(1000, 768),
               "head.fc.bias": r(1000)})
    return sd


def test_imagenet_initialises_both_encoders_of_the_vigor_network(tmp_path):
    sd = _timm_convnext_tiny()
    path = tmp_path / "convnext_tiny.pth"
    torch.save(sd, path)
    model = build_model(config_from_args(_args("--config", "vigor", "--imagenet", str(path))))
    for branch in (model.ground, model.aerial):
        assert torch.equal(branch.encoder.stem.conv.weight, sd["stem.0.weight"])
        assert torch.equal(branch.encoder.stages[2].blocks[8].pwconv1.weight, sd["stages.2.blocks.8.mlp.fc1.weight"])
        for head in (branch.f_head, branch.s_head):
            assert torch.equal(head.blocks[0].pwconv2.weight, sd["stages.3.blocks.0.mlp.fc2.weight"])


def test_the_fov_stage_continues_a_model_on_pinhole_views_and_rigs():
    cfg = config_from_args(_args("--stage", "fov", "--init", "m.pt"))
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.warmup_epochs) == (2, 32, 1.5e-4, 0.25)
    aug = cfg.augment
    assert (aug.pinhole, aug.rig, aug.fov, aug.unknown_heading) == (0.35, 0.25, 0.1, 0.5)
    assert aug.pinhole_fov_range_deg == (60.0, 120.0) and cfg.loss.heading_term == 3.0
    cfg = config_from_args(_args("--stage", "fov", "--init", "m.pt", "--pinhole", "0.5", "--rig", "0",
                                 "--pinhole-fov", "80,100", "--lr", "1e-4", "--epochs", "1"))
    assert (cfg.augment.pinhole, cfg.augment.rig, cfg.augment.pinhole_fov_range_deg) == (0.5, 0.0, (80.0, 100.0))
    assert (cfg.lr, cfg.epochs) == (1e-4, 1)
    # the full stage draws no pinhole views unless asked
    plain = config_from_args(_args())
    assert (plain.augment.pinhole, plain.augment.rig, plain.loss.heading_term, plain.warmup_epochs) == (0, 0, 1.0, 1.0)


@pytest.mark.parametrize("argv, match", [
    (("--stage", "fov"), "expected --init"),
    (("--pinhole", "0.7", "--rig", "0.5"), "at most 1 together"),
    (("--rig", "-0.1"), "--rig: expected a probability"),
    (("--pinhole-fov", "120,60"), "--pinhole-fov: expected 1 <= MIN <= MAX"),
    (("--pinhole-fov", "90"), "--pinhole-fov: expected MIN,MAX"),
])
def test_the_camera_view_options_are_checked(argv, match):
    with pytest.raises(ValueError, match=match):
        config_from_args(_args(*argv))
