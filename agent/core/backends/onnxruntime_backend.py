"""onnxruntime backend for ONNX artifacts (fp32 and QDQ int8)."""

from __future__ import annotations

import numpy as np

from agent.core.backends.base import Backend, BackendError, Pathway
from agent.core.bundle.manifest import ArtifactSpec


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    formats = ("onnx",)

    def __init__(self, artifact: ArtifactSpec, model: bytes, feature_dim: int, threads: int = 1):
        super().__init__(artifact, model, feature_dim, threads)
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendError(
                "onnxruntime is not installed; `pip install onnxruntime` (it is a core "
                "dependency of rapp-edge)"
            ) from err
        options = ort.SessionOptions()
        # One window is a few kFLOPs: thread pools cost more than they give, and the agent
        # must leave the box's cores to the rest of the cell.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                model, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own untyped exceptions
            raise BackendError(f"onnxruntime cannot load {artifact.path}: {err}") from err
        io = artifact.io
        available = {o.name for o in self._session.get_outputs()}
        self._outputs = [*io.hidden, io.x_hat, *io.hidden_hat]
        missing = [name for name in self._outputs if name not in available]
        if missing:
            raise BackendError(
                f"{artifact.path}: outputs {missing} named in the manifest are not in the graph"
            )
        self._input = io.input
        self._n_layers = len(io.hidden)

    def _run(self, batch: np.ndarray) -> Pathway:
        try:
            values = self._session.run(self._outputs, {self._input: batch})
        except Exception as err:
            raise BackendError(f"onnxruntime failed on a batch of {batch.shape[0]}: {err}") from err
        n = self._n_layers
        hidden = (batch, *values[:n])
        hidden_hat = (values[n], *values[n + 1 :])
        return Pathway(hidden=tuple(hidden), hidden_hat=tuple(hidden_hat))
