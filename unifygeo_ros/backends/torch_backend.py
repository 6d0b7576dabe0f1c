"""PyTorch backend: the exported modules run eagerly (CPU or CUDA), fp32."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..model.unifygeo import UnifyGeo
from ..onnx_names import AERIAL_OUTPUTS, GROUND_OUTPUTS
from .base import Backend
from .export import (
    AerialBranchModule,
    DecoderModule,
    GroundBranchModule,
    decoder_outputs,
)


class TorchBackend(Backend):
    def __init__(self, model: UnifyGeo, device: str = "cpu", threads: int | None = None,
                 model_hash: str | None = None):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("torch-cuda: CUDA is not available to PyTorch on this machine")
        if threads:
            torch.set_num_threads(int(threads))
        model = model.eval().to(self.device)
        self.model = model
        self.cfg = model.cfg
        self.model_hash = model_hash or model.state_hash()
        self.name = f"torch-{self.device.type}"
        self._modules = {"ground": GroundBranchModule(model), "aerial": AerialBranchModule(model),
                         "decoder": DecoderModule(model)}
        self._outputs = {"ground": GROUND_OUTPUTS, "aerial": AERIAL_OUTPUTS, "decoder": decoder_outputs(model)}

    def _tensor(self, x: Any, name: str) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            t = x
        else:
            t = torch.from_numpy(np.ascontiguousarray(x))
        if name == "alignment":
            return t.to(self.device)
        return t.to(self.device, dtype=torch.float32)

    def _run(self, module: str, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        args = [self._tensor(v, k) for k, v in feeds.items()]
        with torch.inference_mode():
            outs = self._modules[module](*args)
        return {name: t.detach().cpu().numpy() for name, t in zip(self._outputs[module], outs)}
