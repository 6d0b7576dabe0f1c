"""ONNX export of the three modules and parity with PyTorch (fp32, ONNX Runtime CPU)."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from unifygeo_ros.backends.export import export_onnx, onnx_parity
from unifygeo_ros.model.unifygeo import UnifyGeo


@pytest.mark.parametrize("name", ["small", "paper"])
def test_onnx_parity(tmp_path, name):
    torch.manual_seed(0)
    model = UnifyGeo(name).eval()
    paths = export_onnx(model, tmp_path)
    for key, path in paths.items():
        proto = onnx.load(str(path), load_external_data=False)
        assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
        batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch_dim.dim_param == "batch", f"{key}: batch must be dynamic"
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["model_hash"] == model.state_hash()
    # Batch 3 differs from the export's example batch: the dynamic batch is exercised.
    diffs = onnx_parity(model, paths, batch=3, seed=7)
    for key in ("ground/global_descriptor", "aerial/global_descriptor", "decoder/D"):
        assert diffs[key] <= 1e-4, (key, diffs[key])
    for key, value in diffs.items():
        if not key.endswith("_rel"):
            assert value <= 1e-4, (key, value)
    assert diffs["decoder/D_max_rel"] <= 1e-3
    assert diffs["decoder/alignment"] == 0.0
