"""The autoencoder families behind one pathway contract: shapes, folding, save/load, export.

Every family maps flat feature vectors (N × F) to flat pathway states h_1…h_L (N × w_i,
w_i = ``sizes[i]``), x̂ (N × F) and ĥ_1…ĥ_L, so the agent needs no per-family code.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from agent.core.features import FeatureSpec, Segmentation
from exporter.errors import ExportInputError
from exporter.families_base import PATHWAY_MODES
from exporter.model import (
    FAMILIES,
    PathwayModule,
    TrainedModel,
    make_autoencoder,
    model_from_json,
)
from exporter.onnx_export import export_pathway_onnx, int8_unsupported_reason, quantize_int8
from exporter.train import TrainSettings, train_autoencoder

N_CHANNELS, WINDOW = 3, 13  # an odd window: the conv1d decoder must crop its upsampling
FAMILY_NAMES = tuple(FAMILIES)
EXPORT_RTOL = 1e-4


def _spec(features: tuple[str, ...] = ("raw",), window: int = WINDOW) -> FeatureSpec:
    return FeatureSpec(
        channels=tuple(f"J{i}" for i in range(N_CHANNELS)),
        units=("A",) * N_CHANNELS,
        sample_rate_hz=1000.0,
        segmentation=Segmentation(kind="window", length=window, hop=window),
        features=features,
    )


def _model(family: str, n_layers: int = 3, bottleneck: int = 4, spec: FeatureSpec | None = None):
    spec = spec or _spec()
    torch.manual_seed(0)
    model = make_autoencoder(family, spec.feature_dim, n_layers, bottleneck, spec)
    # A few training-mode passes give BatchNorm running statistics far from (0, 1), so
    # folding is exercised for real.
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(3.0 * torch.randn(32, spec.feature_dim) + 1.0)
    return model.eval()


def _x(n: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, N_CHANNELS * WINDOW)))


def _rel(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / max(float(np.abs(ref).max()), 1e-12))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_pathway_outputs_are_flat_and_match_the_sizes(family):
    model = _model(family)
    x = _x().float()
    with torch.no_grad():
        outs = model.pathway(x)
    n_layers = len(model.sizes) - 1
    assert len(outs) == 2 * n_layers + 1
    widths = [*model.sizes[1:], model.sizes[0], *model.sizes[1:]]
    assert [tuple(o.shape) for o in outs] == [(len(x), w) for w in widths]
    assert model.sizes[0] == N_CHANNELS * WINDOW
    assert model.sizes[-1] == 4, "h_L is the bottleneck code"


@pytest.mark.parametrize("family", ["conv1d", "lstm"])
@pytest.mark.parametrize("mode", PATHWAY_MODES)
def test_temporal_state_widths_follow_the_pathway_mode(family, mode):
    spec = _spec()
    cls = FAMILIES[family]
    config = {**_model(family).config(), "pathway": mode}
    model = cls.from_config(config)
    with torch.no_grad():
        hidden = model.eval().encode_path(_x(4).float())
    assert [h.shape[1] for h in hidden] == model.sizes[1:]
    if family == "conv1d":  # 13 samples → 7 → 4 along the blocks, 16 and 32 channels
        expected = [16, 32] if mode == "pool" else [16 * 7, 32 * 4]
    else:
        per_step = model.hidden
        expected = [per_step if mode == "pool" else per_step * spec.segmentation.length] * 2
    assert model.sizes[1:-1] == expected


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_folded_pathway_equals_the_eval_model(family):
    model = _model(family)
    x = _x().float()
    with torch.no_grad():
        want = model.pathway(x)
        got = PathwayModule(model).eval()(x)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in PathwayModule(model).modules())
    for g, w in zip(got, want, strict=True):
        assert _rel(g.numpy(), w.numpy()) <= 1e-5


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_save_and_load_round_trip(family, tmp_path):
    from agent.core.features import Normalization

    model = _model(family)
    norm = Normalization(np.zeros(N_CHANNELS, np.float32), np.ones(N_CHANNELS, np.float32))
    TrainedModel(model, _spec(), norm, {}).save(tmp_path)
    meta = __import__("json").loads((tmp_path / "model.json").read_text())
    assert meta["family"] == family and meta["layer_sizes"] == model.sizes
    loaded = TrainedModel.load(tmp_path)
    assert loaded.family == family and type(loaded.model) is type(model)
    x = _x().float()
    with torch.no_grad():
        for a, b in zip(loaded.model.pathway(x), model.pathway(x), strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_model_json_without_a_family_is_the_mlp():
    model = model_from_json({"layer_sizes": [10, 6, 3]})
    assert model.family == "mlp" and model.sizes == [10, 6, 3]


def test_unknown_family_in_model_json_is_bad_input():
    with pytest.raises(ExportInputError, match="'gru' is unknown"):
        model_from_json({"family": "gru", "layer_sizes": [10, 3]})


@pytest.mark.parametrize("family", ["conv1d", "lstm"])
def test_temporal_families_need_raw_windows_and_a_block(family):
    with pytest.raises(ExportInputError, match=rf"{family} model .* --features raw"):
        make_autoencoder(family, 39 + 12, 3, 4, _spec(("raw", "stats")))
    with pytest.raises(ExportInputError, match=r"--features raw only \(no feature spec\)"):
        make_autoencoder(family, 39, 3, 4, None)
    with pytest.raises(ExportInputError, match="--layers ≥ 2"):
        make_autoencoder(family, 39, 1, 4, _spec())


def test_unknown_family_in_the_settings_is_bad_input():
    with pytest.raises(ExportInputError, match="choose one of mlp, conv1d, lstm"):
        TrainSettings(model="transformer")


@pytest.mark.parametrize("family", ["conv1d", "lstm"])
def test_training_a_temporal_family_lowers_the_loss(family):
    spec = _spec()
    t = np.arange(400 * WINDOW) / 50.0
    rng = np.random.default_rng(0)
    wave = np.stack([np.sin(t + k) for k in range(N_CHANNELS)], axis=1)
    wave += 0.05 * rng.normal(size=wave.shape)
    # channel-major windows, as agent.core.features lays raw samples out
    x = wave.reshape(-1, WINDOW, N_CHANNELS).transpose(0, 2, 1).reshape(-1, spec.feature_dim)
    settings = TrainSettings(n_layers=2, bottleneck=4, epochs=4, patience=4, model=family)
    model, history = train_autoencoder(x.astype(np.float32), settings, spec=spec)
    assert type(model) is FAMILIES[family]
    assert history["settings"]["model"] == family
    assert history["val_loss"][-1] < history["val_loss"][0]


# The MLP's and the LSTM's exports are checked against PyTorch (≤ 1e-4) by the backend
# contract (tests/contract/test_backends.py, test_family_backends.py): the LSTM's dynamo trace
# alone takes seconds, too many to pay twice.
@pytest.mark.parametrize("family", ["conv1d"])
def test_onnx_export_matches_pytorch(family):
    import onnxruntime as ort

    spec = _spec(window=9)
    model = _model(family, n_layers=2, spec=spec)
    data = export_pathway_onnx(model, spec.feature_dim)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["h_1", "h_2", "x_hat", "h_hat_1", "h_hat_2"]
    assert [i.name for i in session.get_inputs()] == ["x"]
    x = np.random.default_rng(2).normal(size=(9, spec.feature_dim)).astype(np.float32)
    with torch.no_grad():
        want = [t.numpy() for t in PathwayModule(model)(torch.from_numpy(x))]
    for batch in (x, x[:1]):
        got = session.run(None, {"x": batch})
        for g, w in zip(got, want, strict=True):
            assert _rel(g, w[: len(batch)]) <= EXPORT_RTOL
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert "BatchNormalization" not in ops
    assert ("LSTM" in ops) == (family == "lstm")


def _graph_with(op: str) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    node = helper.make_node(op, ["x"], ["y"], **({"alpha": 0.2} if op == "LeakyRelu" else {}))
    graph = helper.make_graph([node], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def test_int8_is_not_offered_for_recurrent_graphs():
    assert int8_unsupported_reason(_graph_with("LeakyRelu")) is None
    reason = int8_unsupported_reason(_graph_with("LSTM"))
    assert reason is not None and "LSTM" in reason and "no int8 artifact" in reason
    calibration = np.zeros((32, 4), np.float32)
    with pytest.raises(ExportInputError, match=r"LSTM.*--no-int8"):
        quantize_int8(_graph_with("LSTM"), calibration)


def test_tflite_refuses_the_lstm_by_name():
    """`build --tflite` on an lstm model: a clear input error before any conversion."""
    from agent.core.features import Normalization
    from exporter.families_tf import check_tflite_support
    from exporter.tflite_export import tflite_artifacts

    check_tflite_support(_model("conv1d"))
    check_tflite_support(_model("mlp"))
    norm = Normalization(np.zeros(N_CHANNELS, np.float32), np.ones(N_CHANNELS, np.float32))
    trained = TrainedModel(_model("lstm"), _spec(), norm, {})
    calibration = np.zeros((32, N_CHANNELS * WINDOW), np.float32)
    with pytest.raises(
        ExportInputError, match=r"TFLite export supports the mlp and conv1d .*not lstm"
    ):
        tflite_artifacts()(trained, calibration)
