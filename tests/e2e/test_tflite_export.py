"""What the TFLite exporter promises about the files it writes (exporter/tflite_export.py)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from exporter.model import ExportError
from tests.support.fixtures.contract import unavailable


def _interpreter(model: bytes):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        unavailable(f"ai-edge-litert missing: {err}")
    return Interpreter(model_content=model)


def _pathway_names(bundle) -> list[str]:
    io = bundle.artifacts["tflite-fp32"].spec.io
    return [*io.hidden, io.x_hat, *io.hidden_hat]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_signature_names_every_pathway_output(bundle, precision):
    interp = _interpreter(bundle.artifacts[f"tflite-{precision}"].model)
    signatures = interp.get_signature_list()
    assert len(signatures) == 1
    (sig,) = signatures.values()
    assert sig["inputs"] == ["x"]
    assert sorted(sig["outputs"]) == sorted(_pathway_names(bundle))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_batch_dimension_is_dynamic_and_interface_is_float(bundle, precision):
    interp = _interpreter(bundle.artifacts[f"tflite-{precision}"].model)
    runner = interp.get_signature_runner()
    details = runner.get_input_details()["x"]
    assert list(details["shape_signature"]) == [-1, bundle.manifest.input.feature_dim]
    assert details["dtype"] == np.float32
    assert all(d["dtype"] == np.float32 for d in runner.get_output_details().values())


def test_int8_is_full_integer_inside(bundle):
    """Only the input and the 2L+1 dequantized outputs are float; weights int8, shared;
    activations int16 (the default 16x8 mode, see exporter.tflite_export)."""
    interp = _interpreter(bundle.artifacts["tflite-int8"].model)
    n_layers = len(bundle.manifest.layer_sizes) - 1
    tensors = interp.get_tensor_details()
    floats = [t for t in tensors if t["dtype"] == np.float32]
    assert len(floats) == 1 + 2 * n_layers + 1, [t["name"] for t in floats]
    assert {t["dtype"] for t in tensors} <= {np.float32, np.int8, np.int16, np.int64}
    # Batch-shaped int16 tensors: the activations of every layer of both passes (at least).
    activations = [t for t in tensors if t["dtype"] == np.int16 and -1 in t["shape_signature"]]
    assert len(activations) >= 3 * n_layers, [t["name"] for t in activations]
    weights = [
        t
        for t in tensors
        if t["dtype"] == np.int8
        and len(t["shape_signature"]) == 2
        and -1 not in t["shape_signature"]
    ]
    # One weight per encoder and decoder layer: both encoder passes share theirs.
    assert len(weights) == 2 * n_layers


def test_fp32_file_holds_each_weight_once(bundle):
    sizes = bundle.manifest.layer_sizes
    n_weights = 2 * sum(a * b for a, b in itertools.pairwise(sizes))
    model = bundle.artifacts["tflite-fp32"].model
    assert 4 * n_weights < len(model) < 4 * n_weights * 1.5


def test_export_is_deterministic(trained_model, calibration_segments):
    from agent.core.features import segment_features
    from exporter.tflite_export import export_pathway_tflite

    calib = segment_features(calibration_segments[:256], trained_model.spec.features)
    dim = trained_model.spec.feature_dim
    try:
        first = export_pathway_tflite(trained_model.model, dim, calib)
    except ExportError as err:
        unavailable(str(err))
    assert export_pathway_tflite(trained_model.model, dim, calib) == first


def test_missing_tensorflow_names_the_extra(trained_model, monkeypatch):
    from exporter.tflite_export import export_pathway_tflite

    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ExportError, match=r"rapp-edge\[tflite-export\]"):
        export_pathway_tflite(trained_model.model, trained_model.spec.feature_dim)


def test_too_little_calibration_data_is_refused(trained_model):
    from exporter.tflite_export import export_pathway_tflite

    dim = trained_model.spec.feature_dim
    with pytest.raises(ExportError, match="calibration windows"):
        export_pathway_tflite(trained_model.model, dim, np.zeros((3, dim), np.float32))


def test_fidelity_report_covers_tflite(bundle):
    fidelity = bundle.report["fidelity"]["tflite-int8"]
    assert fidelity["reference"] == "tflite-fp32"
    assert fidelity["spearman_nap"] >= fidelity["floor_spearman"]


def test_compare_precisions_reports_both_formats(bundle, contract):
    from exporter.fidelity import compare_precisions

    result = compare_precisions(bundle, contract.normal, contract.faulty)
    for fmt in ("onnx", "tflite"):
        nap = result[fmt]["nap"]
        assert 0.5 < nap["auroc_fp32"] <= 1.0
        assert nap["spearman"] > 0.8
        assert isinstance(result[fmt]["passes"], bool)


BLOCKER = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'tensorflow', 'onnx', 'keras', 'exporter'}:
            raise ImportError('blocked in this test: ' + name)
sys.meta_path.insert(0, Block())
"""


def test_litert_backend_runs_without_tensorflow(bundle, contract, tmp_path):
    """ai-edge-litert alone scores the TFLite artifacts: no TensorFlow on the device."""
    path = tmp_path / "b.rapp"
    path.write_bytes(contract.data)
    code = BLOCKER + (
        "from agent.core.bundle.loader import load_bundle\n"
        "from agent.core.scoring import open_scorer\n"
        f"b = load_bundle({str(path)!r})\n"
        "for p in ('fp32', 'int8'):\n"
        "    s = open_scorer(b, 'litert', p)\n"
        "    assert s.backend.name == 'litert'\n"
        "assert 'tensorflow' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if "no LiteRT runtime" in result.stderr:
        unavailable(result.stderr.strip().splitlines()[-1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
