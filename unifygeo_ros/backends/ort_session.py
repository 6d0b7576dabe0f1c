"""ONNX Runtime sessions (no torch import here: deployments may run without PyTorch)."""

from __future__ import annotations

from pathlib import Path


def make_session(path: str | Path, threads: int | None = None, providers: list[str] | None = None):
    """An ``InferenceSession`` for ``path``; CPU unless ``providers`` says otherwise."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])
