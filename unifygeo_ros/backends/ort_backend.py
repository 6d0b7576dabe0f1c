"""ONNX Runtime backend (CPU, CUDA or TensorRT execution provider); torch-free."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..model_config import get_config
from ..onnx_names import FILES
from .base import Backend, as_numpy
from .onnx_files import read_onnx_manifest
from .ort_session import make_session

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def ort_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def default_threads() -> int | None:
    """ONNX Runtime's intra-op threads when none are asked for: ``OMP_NUM_THREADS`` when set
    (ONNX Runtime itself ignores it, and its default, one spinning thread per core, runs about
    twice slower than one thread on a CPU another job keeps busy), else ONNX Runtime's default."""
    import os

    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


class OrtBackend(Backend):
    def __init__(self, folder: str | Path, provider: str = "cpu", threads: int | None = None, fp16: bool = False):
        threads = threads or default_threads()
        folder = Path(folder)
        manifest = read_onnx_manifest(folder)
        if manifest is None:
            raise FileNotFoundError(f"{folder}: expected {sorted(FILES.values())} and manifest.json "
                                    f"(`unifygeo export --weights CKPT --out {folder}`)")
        if provider not in PROVIDERS:
            raise ValueError(f"ONNX Runtime provider: expected one of {sorted(PROVIDERS)}, got {provider!r}")
        wanted = PROVIDERS[provider]
        if wanted not in ort_providers():
            raise RuntimeError(f"onnxruntime-{provider}: this onnxruntime has no {wanted} "
                               f"(available: {', '.join(ort_providers())})")
        providers: list[Any] = []
        if provider == "tensorrt":
            cache = folder / "ort_trt_cache"
            cache.mkdir(exist_ok=True)
            providers.append((wanted, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                                       "trt_fp16_enable": bool(fp16)}))
            providers.append("CUDAExecutionProvider")
        elif provider == "cuda":
            providers.append(wanted)
        providers.append("CPUExecutionProvider")
        self.folder = folder
        self.cfg = get_config(manifest["config"])
        self.model_hash = manifest["model_hash"]
        self.name = f"onnxruntime-{provider}"
        self._sessions = {key: make_session(folder / FILES[key], threads, providers) for key in FILES}
        active = self._sessions["ground"].get_providers()
        if wanted not in active:
            raise RuntimeError(f"{self.name}: ONNX Runtime did not activate {wanted} (active: {active})")
        self._outputs = {k: [o.name for o in s.get_outputs()] for k, s in self._sessions.items()}

    def _run(self, module: str, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        feed = {k: as_numpy(v) for k, v in feeds.items()}
        outs = self._sessions[module].run(None, feed)
        return dict(zip(self._outputs[module], outs))

    def close(self) -> None:
        self._sessions.clear()
