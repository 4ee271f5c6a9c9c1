"""onnxruntime backend for ONNX artifacts (fp32 and QDQ int8), with the fused scoring step.

:meth:`OnnxRuntimeBackend.fuse` appends the step to the artifact's graph
(:mod:`agent.core.backends.onnx_step`) and runs it through IOBinding into preallocated
buffers: per batch size one input and one output array, bound once, so a call copies the
features in, runs, and copies the scores out — no per-call allocation by the runtime.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from agent.core.backends.base import Backend, BackendError, Pathway
from agent.core.backends.fusion import FusedStep, StepMatrices
from agent.core.backends.onnx_step import OUTPUT, append_step
from agent.core.bundle.manifest import ArtifactSpec

# Batch sizes with bound buffers kept per fused step: the live path (1) and catch-up
# batches; others rebind, which costs a few microseconds.
BOUND_BATCH_SIZES = 4


def _session(model: bytes, threads: int, what: str) -> Any:
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
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own untyped exceptions
        raise BackendError(f"onnxruntime cannot load {what}: {err}") from err


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    formats = ("onnx",)

    def __init__(self, artifact: ArtifactSpec, model: bytes, feature_dim: int, threads: int = 1):
        super().__init__(artifact, model, feature_dim, threads)
        self._model = model
        self._session = _session(model, threads, artifact.path)
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

    def fuse(self, step: StepMatrices) -> FusedStep:
        model = append_step(self._model, self.artifact.io, step)
        session = _session(model, self.threads, f"{self.artifact.path} with the scoring step")
        return OnnxFusedStep(self, session, step.width)


class OnnxFusedStep(FusedStep):
    """One session running pathway and scoring step; outputs into bound, reused buffers."""

    def __init__(self, backend: OnnxRuntimeBackend, session: Any, width: int) -> None:
        self._backend = backend
        self._session = session
        self._input = backend.artifact.io.input
        self._width = width
        self._bound: dict[int, tuple[Any, np.ndarray, np.ndarray]] = {}
        # The buffers are shared state: one call at a time (uncontended, ~0.1 µs).
        self._lock = threading.Lock()

    def _bind(self, n: int) -> tuple[Callable[[], None], np.ndarray, np.ndarray]:
        if len(self._bound) >= BOUND_BATCH_SIZES:
            del self._bound[next(iter(self._bound))]
        # The binding holds raw pointers: the arrays live exactly as long as it does.
        x = np.empty((n, self._backend.feature_dim), np.float32)
        out = np.empty((n, self._width), np.float32)
        binding = self._session.io_binding()
        binding.bind_cpu_input(self._input, x)
        binding.bind_output(OUTPUT, "cpu", 0, np.float32, out.shape, out.ctypes.data)
        bound = self._bound[n] = (_runner(self._session, binding), x, out)
        return bound

    def run(self, x: np.ndarray) -> np.ndarray:
        batch = self._backend.check_input(x)
        with self._lock:
            run, features, out = self._bound.get(len(batch)) or self._bind(len(batch))
            features[...] = batch
            try:
                run()
            except Exception as err:
                raise BackendError(
                    f"onnxruntime failed on the scoring step for a batch of {len(batch)}: {err}"
                ) from err
            return out.astype(np.float64)


def _runner(session: Any, binding: Any) -> Callable[[], None]:
    """A call that runs ``binding`` on ``session``.

    onnxruntime's Python ``run_with_iobinding`` checks for WebGPU graph capture on every call,
    ~2 µs of a ~35 µs step here; the native session it wraps runs the same binding directly.
    Where those internals are missing (another onnxruntime version) the public call is used.
    """
    native, raw = getattr(session, "_sess", None), getattr(binding, "_iobinding", None)
    if raw is None or not callable(getattr(native, "run_with_iobinding", None)):
        return functools.partial(session.run_with_iobinding, binding)
    return functools.partial(native.run_with_iobinding, raw, None)
