"""The folder of exported ONNX files (``engines/``) and its ``manifest.json``; torch-free to read.

``unifygeo export`` (:func:`unifygeo_ros.backends.export.export_onnx`) writes
``ground_branch.onnx``, ``aerial_branch.onnx``, ``decoder.onnx`` and ``manifest.json`` (model
hash, configuration, opset). TensorRT engines built from them sit beside them, named by
model hash, TensorRT version and GPU (see :mod:`.tensorrt_backend`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..onnx_names import FILES, ONNX_FORMAT

log = logging.getLogger("unifygeo_ros.backends")



class EnginesMismatch(ValueError):
    """The folder holds files exported from another model than the one asked for."""


def read_onnx_manifest(folder: str | Path) -> dict | None:
    """The folder's manifest when all three ONNX files and a valid manifest are there, else None."""
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file() or not all((folder / f).is_file() for f in FILES.values()):
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        return None
    if manifest.get("format") != ONNX_FORMAT or "model_hash" not in manifest:
        return None
    return manifest


def ensure_onnx(folder: str | Path, model_hash: str, model=None, may_replace: bool = False) -> dict:
    """Make sure ``folder`` holds the ONNX export of the model ``model_hash``.

    Exported from ``model`` (a ``UnifyGeo``; needs PyTorch) when missing. When the folder
    holds another model's export: replaced when ``may_replace`` (a cache the caller owns),
    else :class:`EnginesMismatch`. Returns the manifest.
    """
    folder = Path(folder)
    manifest = read_onnx_manifest(folder)
    if manifest is not None and manifest["model_hash"] == model_hash:
        return manifest
    if manifest is not None and not may_replace:
        raise EnginesMismatch(
            f"{folder} holds ONNX files of model {manifest['model_hash'][:12]}, but model {model_hash[:12]} is "
            f"needed (the database's); export the right one with `unifygeo export --weights CKPT --out {folder}` "
            f"or point to another folder")
    if model is None:
        raise FileNotFoundError(f"{folder}: no ONNX export of model {model_hash[:12]} and no weights to export "
                                f"it from; run `unifygeo export --weights CKPT --out {folder}`")
    from .export import export_onnx

    log.info("exporting model %s to ONNX in %s", model_hash[:12], folder)
    export_onnx(model, folder)
    manifest = read_onnx_manifest(folder)
    assert manifest is not None and manifest["model_hash"] == model_hash
    return manifest
