"""Which backends this machine has, and opening one by name (or the fastest, ``auto``).

Order of preference for ``auto`` (fastest first)::

    tensorrt > onnxruntime-tensorrt > onnxruntime-cuda > torch-cuda > onnxruntime-cpu > torch-cpu

On a CPU, ONNX Runtime before PyTorch was measured, not assumed (``unifygeo bench
localize``, small model, the project's 2-core CPU): idle with 2 threads, a panorama takes
26 ms (known heading) / 53 ms (unknown) with ONNX Runtime against 28 / 46 ms with PyTorch,
with 1 thread each on a busy CPU 55 / 95 ms against 76 / 117 ms, and ONNX Runtime's peak
memory is half PyTorch's (``unifygeo bench model``). With both threads free PyTorch's
unknown-heading ground stage is faster in ``bench localize`` (19 against 30 ms);
``backend: torch`` picks PyTorch.
ONNX Runtime follows ``OMP_NUM_THREADS`` when it is set (:func:`.ort_backend.default_threads`).
The choice is logged ("backend: ... (auto: ...)").
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Callable

from .availability import tensorrt_unavailable_reason, torch_cuda_unavailable_reason
from .base import Backend

log = logging.getLogger("unifygeo_ros.backends")

BACKEND_ORDER = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda", "onnxruntime-cpu",
                 "torch-cpu")
ALIASES = {"torch": ("torch-cuda", "torch-cpu"),
           "onnxruntime": ("onnxruntime-tensorrt", "onnxruntime-cuda", "onnxruntime-cpu"),
           "ort": ("onnxruntime-tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")}


def _ort_unavailable(provider: str) -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    from .ort_backend import PROVIDERS, ort_providers

    have = ort_providers()
    return None if PROVIDERS[provider] in have else f"onnxruntime has no {PROVIDERS[provider]} ({', '.join(have)})"


def availability() -> dict[str, str | None]:
    """Every backend name -> None when usable here, else the reason it is not."""
    torch_cpu = None if importlib.util.find_spec("torch") is not None else "PyTorch is not installed"
    return {
        "tensorrt": tensorrt_unavailable_reason(),
        "onnxruntime-tensorrt": _ort_unavailable("tensorrt"),
        "onnxruntime-cuda": _ort_unavailable("cuda"),
        "torch-cuda": torch_cuda_unavailable_reason(),
        "onnxruntime-cpu": _ort_unavailable("cpu"),
        "torch-cpu": torch_cpu,
    }


def available_backends() -> list[str]:
    avail = availability()
    return [name for name in BACKEND_ORDER if avail[name] is None]


def resolve_backend_name(name: str) -> tuple[list[str], str]:
    """Candidates to try, in order, for a requested name, and a note on why."""
    avail = availability()
    if name == "auto":
        return [n for n in BACKEND_ORDER if avail[n] is None], "auto: fastest available"
    if name in ALIASES:
        cands = [n for n in ALIASES[name] if avail[n] is None]
        if not cands:
            raise RuntimeError(f"backend {name!r}: none of {ALIASES[name]} is available here "
                               f"({'; '.join(f'{n}: {avail[n]}' for n in ALIASES[name])})")
        return cands, f"{name}: best available"
    if name not in avail:
        raise ValueError(f"unknown backend {name!r}; expected auto, {', '.join(ALIASES)} or one of "
                         f"{', '.join(BACKEND_ORDER)}")
    if avail[name] is not None:
        raise RuntimeError(f"backend {name!r} is not available here: {avail[name]}")
    return [name], "requested"


def open_backend(name: str, model_hash: str, onnx_dir: str | Path, load_model: Callable[[], object] | None = None,
                 onnx_dir_owned: bool = False, threads: int | None = None, fp16: bool = True) -> Backend:
    """Open backend ``name`` (``auto``, an alias or an exact name) for the model ``model_hash``.

    ``load_model()`` returns the ``UnifyGeo`` model (for the PyTorch backends and to export
    ONNX files when ``onnx_dir`` lacks them); ``onnx_dir_owned``: the folder is a cache
    that may be overwritten with this model's export. A backend that fails to open is
    logged and the next candidate tried (``auto`` and aliases only).
    """
    candidates, why = resolve_backend_name(name)
    errors = []
    for cand in candidates:
        try:
            backend = _open_one(cand, model_hash, Path(onnx_dir), load_model, onnx_dir_owned, threads, fp16)
        except Exception as exc:
            if len(candidates) == 1:
                raise
            log.warning("backend %s failed to open (%s); trying the next one", cand, exc)
            errors.append(f"{cand}: {exc}")
            continue
        if backend.model_hash != model_hash:
            raise ValueError(f"backend {cand} runs model {backend.model_hash[:12]}, expected {model_hash[:12]}")
        log.info("backend: %s (%s)", backend.name, why)
        return backend
    raise RuntimeError("no backend could be opened: " + "; ".join(errors))


def _open_one(name: str, model_hash: str, onnx_dir: Path, load_model, owned: bool, threads, fp16) -> Backend:
    if name.startswith("torch"):
        from .torch_backend import TorchBackend

        if load_model is None:
            raise RuntimeError(f"{name}: no PyTorch checkpoint to load")
        return TorchBackend(load_model(), device=name.split("-", 1)[1], threads=threads, model_hash=model_hash)
    from .onnx_files import ensure_onnx, read_onnx_manifest

    existing = read_onnx_manifest(onnx_dir)
    model = None
    if (existing is None or existing["model_hash"] != model_hash) and load_model is not None:
        model = load_model()
    ensure_onnx(onnx_dir, model_hash, model, may_replace=owned)
    if name == "tensorrt":
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(onnx_dir, fp16=fp16)
    from .ort_backend import OrtBackend

    return OrtBackend(onnx_dir, provider=name.split("-", 1)[1], threads=threads, fp16=fp16)
