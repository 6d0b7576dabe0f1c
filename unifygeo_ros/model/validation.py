"""Input checks that raise ValueError naming what was expected.

They are skipped while tracing for ONNX export (the graph must not contain them).
"""

from __future__ import annotations

import torch


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def check_image(x: torch.Tensor, name: str, size: tuple[int, int]) -> None:
    """``x`` must be a finite float tensor of shape (B, 3, *size)."""
    if _exporting():
        return
    expected = f"a float tensor of shape (B, 3, {size[0]}, {size[1]})"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected {expected}, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name}: expected {expected}, got {x.ndim} dimensions {tuple(x.shape)}")
    if x.shape[1] != 3:
        raise ValueError(f"{name}: expected 3 colour channels (RGB) in {expected}, got {x.shape[1]} "
                         f"channels {tuple(x.shape)}")
    if tuple(x.shape[2:]) != tuple(size):
        raise ValueError(f"{name}: expected height x width {size[0]} x {size[1]} for this model "
                         f"configuration, got {x.shape[2]} x {x.shape[3]}; resize it first")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected {expected} with B >= 1, got an empty batch")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected {expected}, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite pixel values, found NaN or infinity")


def check_column_mask(mask: torch.Tensor, batch: int, width: int) -> None:
    if _exporting():
        return
    if mask.shape != (batch, width):
        raise ValueError(f"column mask: expected shape ({batch}, {width}) (one value per panorama column), "
                         f"got {tuple(mask.shape)}")
    if not bool(torch.isfinite(mask).all()) or bool((mask < 0).any()) or bool((mask > 1).any()):
        raise ValueError("column mask: expected values in [0, 1] (1 = the camera sees this column)")
    if bool((mask.sum(dim=1) == 0).any()):
        raise ValueError("column mask: expected at least one covered column per image, got an all-zero mask")
