"""LiteRT backend for TFLite artifacts (fp32 and full-integer int8 with a float interface).

Runtime: ``ai_edge_litert`` (the ``litert`` extra); where only ``tflite_runtime`` is
installed — armv7 boxes, which have no ai-edge-litert wheel and need numpy < 2 — its
interpreter is used instead. Both expose the same Interpreter API.

Outputs are mapped through the model's **signature** (``get_signature_runner``), never by raw
tensor index: the converter orders output tensors as it likes, while signature names are
exactly the pathway names the manifest lists. The signature runner resizes the input tensor
to each batch (a no-op when the batch size repeats), so any batch size works on the
dynamic-batch models the exporter writes.

Kernels: int8 artifacts run on TFLite's built-in integer kernels, without the XNNPACK
delegate; fp32 keeps the default XNNPACK delegate. Measured on x86 with the default model
(benchmarks/scoring_speed.py, "LiteRT kernels", one thread, bare inference):

- fp32: XNNPACK is 1.2× faster than the built-ins at batch 1 and 3.4× at batch 64; outputs
  differ by ≤ 4e-5.
- int8 as the exporter writes it by default (16-bit activations, the converter's 16x8
  mode): XNNPACK has no kernels for it and delegates nothing, so both settings run the same
  built-in kernels — 1.0× at batch 1 and 64, bit-identical outputs. (An older version of this
  docstring promised 4–10× here; that holds only for the next case.)
- int8 with 8-bit activations (``--int8-activations 8``): XNNPACK takes the integer ops and
  is 4.9× faster at batch 1, 7.8× at batch 64, but it requantizes through float where the
  built-ins use fixed point, so outputs differ (up to 0.45 absolute on that pathway), and
  RaPP differences d_i = ĥ_i − h_i are small enough that this moves the canary windows' NAP
  by 0.4–26 % against scores computed on the built-ins: the 0.05 int8 canary check fails.

So the built-ins are the int8 default: they give bit-identical outputs on ai-edge-litert 2.3
and tflite-runtime 2.14 (checked), whose QS8 path never used XNNPACK, and a canary computed
at export reproduces on every box, at no cost for the default artifacts. x86 boxes should
still run onnxruntime, first in the auto order (its fused step, agent.core.backends.fusion,
has no LiteRT counterpart: LiteRT scores through the numpy path); LiteRT is for ARM boxes,
where the built-ins use ruy's NEON kernels. ``kernels="xnnpack"`` on an int8 artifact is for
comparisons only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.core.backends.base import Backend, BackendError, Pathway
from agent.core.bundle.manifest import ArtifactSpec

INSTALL_HINT = (
    "install the LiteRT runtime: `pip install 'rapp-edge[litert]'` (ai-edge-litert), or on "
    "armv7 boxes `pip install tflite-runtime` (needs numpy<2)"
)


KERNELS = ("xnnpack", "builtin")


def _interpreter_module() -> tuple[Any, str]:
    """The first installed TFLite interpreter module: ai_edge_litert, else tflite_runtime."""
    errors = []
    try:
        from ai_edge_litert import interpreter

        return interpreter, "ai-edge-litert"
    except ImportError as err:
        errors.append(f"ai_edge_litert: {err}")
    try:
        from tflite_runtime import interpreter

        return interpreter, "tflite-runtime"
    except ImportError as err:
        errors.append(f"tflite_runtime: {err}")
    raise BackendError(f"no LiteRT runtime is installed; {INSTALL_HINT} ({'; '.join(errors)})")


class LiteRtBackend(Backend):
    name = "litert"
    formats = ("tflite",)

    def __init__(
        self,
        artifact: ArtifactSpec,
        model: bytes,
        feature_dim: int,
        threads: int = 1,
        kernels: str | None = None,
    ):
        """``kernels``: "builtin" (default for int8) or "xnnpack" (default for fp32)."""
        super().__init__(artifact, model, feature_dim, threads)
        module, self.runtime = _interpreter_module()
        self.kernels = kernels or self.default_kernels(artifact.precision)
        if self.kernels not in KERNELS:
            raise BackendError(f"kernels = {self.kernels!r}: choose one of {', '.join(KERNELS)}")
        # Keep our own reference: the interpreter reads the flatbuffer in place.
        self._model = bytes(model)
        options: dict[str, Any] = {}
        resolver = getattr(module, "OpResolverType", None)
        if resolver is not None:
            options["experimental_op_resolver_type"] = (
                resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                if self.kernels == "builtin"
                else resolver.AUTO
            )
        try:
            # One window is a few kFLOPs: more threads cost more than they give, and the
            # agent must leave the box's cores to the rest of the cell.
            self._interpreter = module.Interpreter(
                model_content=self._model, num_threads=threads, **options
            )
        except Exception as err:  # the runtime raises ValueError/RuntimeError, untyped
            raise BackendError(f"{self.runtime} cannot load {artifact.path}: {err}") from err
        io = artifact.io
        self._names = [*io.hidden, io.x_hat, *io.hidden_hat]
        self._input = io.input
        self._n_layers = len(io.hidden)
        key = self._signature_key()
        try:
            self._runner = self._interpreter.get_signature_runner(key)
        except (AttributeError, ValueError) as err:
            raise BackendError(
                f"{artifact.path}: {self.runtime} cannot run signature {key!r} ({err}); "
                "tflite-runtime ≥ 2.7 or ai-edge-litert is needed"
            ) from err
        self._check_dtypes()

    @staticmethod
    def default_kernels(precision: str) -> str:
        """The kernels an artifact of ``precision`` runs on unless asked otherwise."""
        return "builtin" if precision == "int8" else "xnnpack"

    def _signature_key(self) -> str:
        """The signature whose input and outputs carry the manifest's pathway names."""
        try:
            signatures: dict[str, dict[str, Any]] = self._interpreter.get_signature_list()
        except AttributeError as err:
            raise BackendError(
                f"{self.runtime} is too old for signature runners; {INSTALL_HINT}"
            ) from err
        problems = []
        for key, sig in signatures.items():
            inputs, outputs = list(sig.get("inputs", [])), set(sig.get("outputs", []))
            missing = [n for n in self._names if n not in outputs]
            if inputs == [self._input] and not missing:
                return key
            problems.append(f"{key!r}: inputs {inputs}, missing outputs {missing}")
        raise BackendError(
            f"{self.artifact.path}: no signature has input {self._input!r} and outputs "
            f"{self._names} named in the manifest ("
            + ("; ".join(problems) or "the model has no signatures")
            + ")"
        )

    def _check_dtypes(self) -> None:
        """The agent passes float32 features; an int8-interface model would need scales."""
        details = self._runner.get_input_details()[self._input]
        dtype = np.dtype(details["dtype"])
        if dtype != np.float32:
            raise BackendError(
                f"{self.artifact.path}: input {self._input!r} is {dtype}; rapp-edge TFLite "
                "models keep a float32 interface (int8 inside) — re-export the bundle"
            )
        shape = details.get("shape_signature", details.get("shape"))
        if shape is not None and len(shape) == 2 and int(shape[1]) != self.feature_dim:
            raise BackendError(
                f"{self.artifact.path}: input {self._input!r} takes {int(shape[1])} features "
                f"but the bundle declares {self.feature_dim}"
            )

    def _run(self, batch: np.ndarray) -> Pathway:
        try:
            out = self._runner(**{self._input: batch})
        except Exception as err:  # resize/invoke errors surface as ValueError/RuntimeError
            raise BackendError(
                f"{self.runtime} failed on a batch of {batch.shape[0]}: {err}"
            ) from err
        values = [np.asarray(out[name], dtype=np.float32) for name in self._names]
        n = self._n_layers
        hidden = (batch, *values[:n])
        hidden_hat = (values[n], *values[n + 1 :])
        return Pathway(hidden=tuple(hidden), hidden_hat=tuple(hidden_hat))
