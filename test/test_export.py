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


@pytest.mark.slow
def test_onnx_parity_of_the_vigor_network_with_weights_in_the_released_layout(tmp_path):
    """The network of the authors' released checkpoints (no yaw head), with a complete state
    dict in their layout drawn from a seed: every module exports, and ONNX Runtime matches
    PyTorch within 1e-4 on every output."""
    from unifygeo_ros.model.released import from_released, released_state_dict
    from unifygeo_ros.onnx_names import DECODER_OUTPUTS

    model = UnifyGeo("vigor")
    model.load_state_dict(from_released(released_state_dict(0)), strict=True)
    model.eval()
    paths = export_onnx(model, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["config"]["name"] == "vigor" and manifest["model_hash"] == model.state_hash()
    assert manifest["outputs"]["decoder"] == [n for n in DECODER_OUTPUTS if n != "yaw_field"]
    decoder = onnx.load(str(paths["decoder"]), load_external_data=False)
    assert "yaw_field" not in [o.name for o in decoder.graph.output]
    # What the TensorRT backend's engine builder needs (tensorrt_backend.build_engine): a
    # dynamic batch and fixed other dimensions on every input, so that one profile per
    # module covers it; the engine's outputs are the file's own.
    for key, path in paths.items():
        proto = onnx.load(str(path), load_external_data=False)
        for tensor in proto.graph.input:
            dims = tensor.type.tensor_type.shape.dim
            assert dims[0].dim_param == "batch", (key, tensor.name)
            assert all(d.dim_value > 0 for d in dims[1:]), (key, tensor.name)
    diffs = onnx_parity(model, paths, batch=2, seed=7)
    assert not any(k.startswith("decoder/yaw") for k in diffs)
    for key, value in diffs.items():
        if not key.endswith("_rel"):
            assert value <= 1e-4, (key, value)
    assert diffs["decoder/D_max_rel"] <= 1e-3
    assert diffs["decoder/alignment"] == 0.0
