"""int8 vs fp32 fidelity of a built bundle on labelled data (the int8 quality targets).

``build_bundle`` already gates int8 artifacts on pseudo-anomalies made from the calibration
windows. This module answers the question a release asks on *real* or simulated faults:
does the int8 artifact rank windows like its fp32 sibling, and does it detect as well? It
scores through the agent's own :class:`~agent.core.scoring.Scorer` and backends — what the device
computes — never through PyTorch.

The targets here (``MAX_AUROC_DROP``, ``MIN_SPEARMAN``) are also the build gate's floor for the
default int8 scheme, int8 weights with 16-bit activations (``exporter.build.FIDELITY_FLOOR``):
it meets them on CNC MI-V and the simulator (``benchmarks/results/int8_fidelity.md``). An
artifact built with ``--int8-activations 8`` is gated at ρ 0.90 / drop 0.03 only and usually
fails ``passes`` here — by design, as the report is what says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.core.backends import BackendError, create_backend
from agent.core.bundle.loader import Bundle, load_bundle
from agent.core.bundle.manifest import SCORE_NAMES
from agent.core.scoring import Scorer
from exporter.build import FORMAT_BACKEND
from exporter.errors import ExportError
from exporter.metrics import auroc, spearman

MAX_AUROC_DROP = 0.005
MIN_SPEARMAN = 0.98
BATCH = 512


def _scores(scorer: Scorer, features: np.ndarray) -> dict[str, np.ndarray]:
    parts = [scorer.score(features[i : i + BATCH]) for i in range(0, len(features), BATCH)]
    return {name: np.concatenate([p.get(name) for p in parts]) for name in SCORE_NAMES}


def _scorer(bundle: Bundle, artifact_id: str, threads: int) -> Scorer:
    loaded = bundle.artifacts[artifact_id]
    backend = FORMAT_BACKEND[loaded.spec.format]
    try:
        return Scorer(bundle, loaded, create_backend(loaded, bundle, backend, threads))
    except BackendError as err:
        raise ExportError(f"cannot score artifact {artifact_id!r}: {err}") from err


def compare_precisions(
    bundle: Bundle | bytes | Path | str,
    normal_features: np.ndarray,
    anomalous_features: np.ndarray,
    threads: int = 1,
) -> dict[str, Any]:
    """Per format with both precisions: AUROC of each score at fp32 and int8, their drop,
    and Spearman ρ between int8 and fp32 scores (all windows and normal windows only).

    Returns ``{"onnx": {...}, "tflite": {...}, "n_normal": …, "n_anomalous": …}``; each
    format entry carries ``passes`` for the quality targets on NAP (|AUROC drop| ≤ 0.005,
    ρ ≥ 0.98). "Within" is two-sided: an int8 artifact that detects clearly *better* than
    fp32 also computes materially different scores, which is worth a look (in practice it
    points at NAP whitening directions near the noise floor). Formats without an fp32/int8
    pair are left out.
    """
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    normal = np.ascontiguousarray(normal_features, dtype=np.float32)
    anomalous = np.ascontiguousarray(anomalous_features, dtype=np.float32)
    if len(normal) == 0 or len(anomalous) == 0:
        raise ExportError("compare_precisions needs both normal and anomalous windows")
    x = np.concatenate([normal, anomalous])
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    n = len(normal)
    out: dict[str, Any] = {"n_normal": len(normal), "n_anomalous": len(anomalous)}
    ids = set(loaded.artifacts)
    for fmt in FORMAT_BACKEND:
        fp32_id, int8_id = f"{fmt}-fp32", f"{fmt}-int8"
        if fp32_id not in ids or int8_id not in ids:
            continue
        ref = _scores(_scorer(loaded, fp32_id, threads), x)
        got = _scores(_scorer(loaded, int8_id, threads), x)
        entry: dict[str, Any] = {}
        for name in SCORE_NAMES:
            a_ref, a_got = auroc(ref[name], labels), auroc(got[name], labels)
            entry[name] = {
                "auroc_fp32": a_ref,
                "auroc_int8": a_got,
                "auroc_drop": a_ref - a_got,
                "spearman": spearman(got[name], ref[name]),
                "spearman_normal_only": spearman(got[name][:n], ref[name][:n]),
            }
        nap = entry["nap"]
        entry["passes"] = bool(
            abs(nap["auroc_drop"]) <= MAX_AUROC_DROP and nap["spearman"] >= MIN_SPEARMAN
        )
        out[fmt] = entry
    return out
