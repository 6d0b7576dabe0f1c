"""Whether the GPU backends can run here, and if not, why (no heavy imports)."""

from __future__ import annotations

import importlib.util


def torch_cuda_unavailable_reason() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed"
    import torch

    return None if torch.cuda.is_available() else "PyTorch sees no CUDA device"


def tensorrt_unavailable_reason() -> str | None:
    """None when the TensorRT Python API and a CUDA device are usable, else why not."""
    spec = importlib.util.find_spec("tensorrt")
    if spec is None or spec.origin is None:      # a stubs-only install leaves a namespace package
        return "the TensorRT Python package is not installed"
    try:
        import tensorrt
    except Exception as exc:  # broken install: missing shared libraries
        return f"TensorRT does not import ({exc})"
    if not hasattr(tensorrt, "Builder"):
        return "the tensorrt module has no Builder (type stubs only?)"
    return torch_cuda_unavailable_reason()
