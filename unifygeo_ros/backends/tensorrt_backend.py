"""TensorRT 10 backend: engines built from the ONNX files, run with torch CUDA tensors as buffers.

Engines are cached beside the ONNX files, one per module, named by what makes an engine
reusable: ``<module>_<model hash[:16]>_trt<version>_<gpu>_<fp16|fp32>.engine``. Building
one takes minutes on a Jetson; it happens once, with the log line "building TensorRT
engine ... (this can take minutes)". The batch dimension is dynamic within an
optimization profile (:data:`BATCH_PROFILES`). Each engine's inputs and outputs are those its
ONNX file declares (a decoder without a yaw head, as ``vigor``'s, has no ``yaw_field``). Type-checked with mypy against
tensorrt-stubs (``test/test_backends.py``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model_config import get_config
from ..onnx_names import FILES
from .base import Backend
from .onnx_files import read_onnx_manifest

try:                     # optional: this module imports without TensorRT, and says so when used
    import tensorrt as trt
except ImportError:      # pragma: no cover - depends on the machine
    trt = None  # type: ignore[assignment]

log = logging.getLogger("unifygeo_ros.backends")

#: (min, opt, max) of the batch dimension per module: the ground branch sees 1 or R
#: copies (unknown heading), the aerial branch database batches or the top-k, the
#: decoder the top-k candidates (times the alignments searched without a known heading).
#: Larger batches are split by :class:`Backend` (``max_batch``).
BATCH_PROFILES: dict[str, tuple[int, int, int]] = {"ground": (1, 4, 16), "aerial": (1, 8, 64),
                                                   "decoder": (1, 5, 32)}
WORKSPACE_BYTES = 1 << 30
_STATE: dict[str, Any] = {}


def require_tensorrt() -> None:
    """Raise a clear RuntimeError unless the TensorRT Python API is importable (not stubs only)."""
    if trt is None or not hasattr(trt, "Builder"):
        from .availability import tensorrt_unavailable_reason

        raise RuntimeError(f"tensorrt: {tensorrt_unavailable_reason() or 'the TensorRT Python API is missing'}")


def _logger() -> "trt.Logger":
    if "logger" not in _STATE:
        _STATE["logger"] = trt.Logger(trt.Logger.WARNING)
    return _STATE["logger"]


def _torch_dtype(dtype: "trt.DataType") -> torch.dtype:
    table: dict[Any, torch.dtype] = {
        trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
        trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64, trt.DataType.BOOL: torch.bool,
    }
    if dtype not in table:
        raise TypeError(f"TensorRT tensor type {dtype} is not supported here; expected float, half, int32, int64 "
                        f"or bool")
    return table[dtype]


def gpu_slug() -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name(0)).strip("-").lower()


def engine_path(folder: Path, module: str, model_hash: str, fp16: bool) -> Path:
    return folder / f"{module}_{model_hash[:16]}_trt{trt.__version__}_{gpu_slug()}_{'fp16' if fp16 else 'fp32'}.engine"


def build_engine(onnx_path: Path, out_path: Path, batch: tuple[int, int, int], fp16: bool) -> None:
    """Parse ``onnx_path``, build a serialized engine with a dynamic-batch profile, write it."""
    require_tensorrt()
    builder = trt.Builder(_logger())
    network = builder.create_network(0)          # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, _logger())
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tensor.shape
        rest = [int(dims[j]) for j in range(1, len(dims))]
        lo, opt, hi = ([b, *rest] for b in batch)
        profile.set_shape(tensor.name, trt.Dims(lo), trt.Dims(opt), trt.Dims(hi))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    tmp = out_path.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(out_path)


class TrtModule:
    """One deserialized engine and its execution context."""

    def __init__(self, path: Path):
        require_tensorrt()
        self.runtime = trt.Runtime(_logger())
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise RuntimeError(f"TensorRT could not load {path} (built by another TensorRT version or GPU?)")
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def _dtype(self, name: str) -> torch.dtype:
        return _torch_dtype(self.engine.get_tensor_dtype(name))

    def __call__(self, feeds: dict[str, Any]) -> dict[str, torch.Tensor]:
        keep = []
        for name in self.inputs:
            x = feeds[name]
            t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
            t = t.to(device="cuda", dtype=self._dtype(name)).contiguous()
            keep.append(t)
            if not self.context.set_input_shape(name, tuple(t.shape)):
                raise ValueError(f"TensorRT: input {name} of shape {tuple(t.shape)} is outside the engine's profile")
            self.context.set_tensor_address(name, t.data_ptr())
        outs: dict[str, torch.Tensor] = {}
        for name in self.outputs:
            dims = self.context.get_tensor_shape(name)
            shape = tuple(int(dims[j]) for j in range(len(dims)))
            out = torch.empty(shape, dtype=self._dtype(name), device="cuda")
            outs[name] = out
            self.context.set_tensor_address(name, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        del keep
        return outs


class TensorRTBackend(Backend):
    def __init__(self, folder: str | Path, fp16: bool = True):
        require_tensorrt()
        if not torch.cuda.is_available():
            raise RuntimeError("tensorrt: PyTorch sees no CUDA device (the engines run on torch CUDA buffers)")
        folder = Path(folder)
        manifest = read_onnx_manifest(folder)
        if manifest is None:
            raise FileNotFoundError(f"{folder}: expected the ONNX export (`unifygeo export --weights CKPT --out {folder}`)")
        self.cfg = get_config(manifest["config"])
        self.model_hash = str(manifest["model_hash"])
        self.name = "tensorrt"
        self.max_batch = {module: hi for module, (_, _, hi) in BATCH_PROFILES.items()}
        self.fp16 = fp16
        self.engine_paths = ensure_engines(folder, self.model_hash, fp16)
        self._modules = {key: TrtModule(path) for key, path in self.engine_paths.items()}

    def _run(self, module: str, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        outs = self._modules[module](feeds)
        return {k: v.float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy() for k, v in outs.items()}

    def close(self) -> None:
        self._modules.clear()


def ensure_engines(folder: Path, model_hash: str, fp16: bool) -> dict[str, Path]:
    """Build the three engines unless the cache has them; returns their paths."""
    require_tensorrt()
    if not torch.cuda.is_available():
        raise RuntimeError("tensorrt: PyTorch sees no CUDA device (engines are built for the GPU they run on)")
    paths = {}
    for key, onnx_name in FILES.items():
        path = engine_path(folder, key, model_hash, fp16)
        if not path.is_file():
            log.warning("building TensorRT engine %s from %s (this can take minutes)", path.name, onnx_name)
            build_engine(folder / onnx_name, path, BATCH_PROFILES[key], fp16)
            log.warning("TensorRT engine %s built", path.name)
        paths[key] = path
    return paths
