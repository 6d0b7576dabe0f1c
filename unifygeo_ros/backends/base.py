"""The interface every inference backend implements (torch-free).

A backend runs the three deployable modules of :mod:`unifygeo_ros.backends.export` with the
tensor names of :mod:`unifygeo_ros.onnx_names`:

* ``encode_ground(image (N,3,H,W) float32 normalised, column_mask (N,W) float32)``
  -> ``global_descriptor, ground_desc0..3, column_valid, global_rolls``
* ``encode_aerial(image (N,3,L,L))`` -> ``global_descriptor, aerial_feat0..3``
* ``decode(inputs)`` with ``ground_desc0..3 (B,R,c,W'), column_valid (B,R,W'),
  aerial_feat0..3, heading_logprior (B,K)`` -> ``D, yaw_field, m0_max,
  match_score, alignment_scores, alignment`` (``yaw_field`` only from a model with a yaw
  head; the ``vigor`` network of the authors' checkpoints has none)

Inputs may be numpy arrays or torch tensors; outputs are numpy arrays (the localizer's
post-processing runs on the CPU), keyed by their names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping

import numpy as np

from ..model_config import ModelConfig
from ..onnx_names import AERIAL_INPUTS, DECODER_INPUTS, GROUND_INPUTS


def as_numpy(x: Any, dtype=np.float32) -> np.ndarray:
    """A contiguous numpy array of ``dtype`` from a numpy array or a (CPU/CUDA) torch tensor."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=dtype)


class Backend(ABC):
    """One way of running the network; see the module docstring."""

    #: e.g. ``onnxruntime-cpu``, ``torch-cuda``, ``tensorrt``
    name: str
    cfg: ModelConfig
    model_hash: str

    @abstractmethod
    def _run(self, module: str, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run ``module`` (``ground`` | ``aerial`` | ``decoder``) on named inputs."""

    #: largest batch each module accepts (absent: any); larger batches are run in parts
    max_batch: dict[str, int] = {}

    def _run_batched(self, module: str, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        limit = self.max_batch.get(module)
        n = len(next(iter(feeds.values())))
        if not limit or n <= limit:
            return self._run(module, feeds)
        parts = [self._run(module, {k: v[i:i + limit] for k, v in feeds.items()}) for i in range(0, n, limit)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def encode_ground(self, image, column_mask) -> dict[str, np.ndarray]:
        return self._run_batched("ground", dict(zip(GROUND_INPUTS, (image, column_mask))))

    def encode_aerial(self, image) -> dict[str, np.ndarray]:
        return self._run_batched("aerial", dict(zip(AERIAL_INPUTS, (image,))))

    def decode(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        missing = [n for n in DECODER_INPUTS if n not in inputs]
        if missing:
            raise ValueError(f"decoder: missing inputs {missing}; expected {DECODER_INPUTS}")
        return self._run_batched("decoder", {n: inputs[n] for n in DECODER_INPUTS})

    def close(self) -> None:
        """Release sessions / engines (optional)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} model {self.model_hash[:12]}>"
