"""Inference backends behind one interface; see :func:`create_backend`."""

from __future__ import annotations

from agent.core.backends.base import Backend, BackendError, Pathway
from agent.core.bundle.loader import Bundle, LoadedArtifact

BACKEND_NAMES = ("auto", "onnxruntime", "litert")


def backend_class(name: str) -> type[Backend]:
    """Import a runtime's module only when it is asked for, so missing extras stay optional."""
    if name == "onnxruntime":
        from agent.core.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend
    if name == "litert":
        from agent.core.backends.litert_backend import LiteRtBackend

        return LiteRtBackend
    raise BackendError(f"backend = {name!r}: choose one of {', '.join(BACKEND_NAMES)}")


def create_backend(loaded: LoadedArtifact, bundle: Bundle, name: str, threads: int = 1) -> Backend:
    """Instantiate backend ``name`` for an artifact of ``bundle``."""
    cls = backend_class(name)
    if loaded.spec.format not in cls.formats:
        raise BackendError(
            f"backend {name} runs {'/'.join(cls.formats)} models, but artifact "
            f"{loaded.spec.id!r} is {loaded.spec.format}"
        )
    return cls(loaded.spec, loaded.model, bundle.manifest.input.feature_dim, threads)


__all__ = ["BACKEND_NAMES", "Backend", "BackendError", "Pathway", "backend_class", "create_backend"]
