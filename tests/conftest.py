"""Session fixtures shared across test folders: a small trained model and its bundle.

Built once from synthetic currents through the real exporter (torch → ONNX → int8 QDQ), so
bundle, backend and CLI tests all run against genuine artifacts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.synthetic import CHANNELS, currents, write_csv

WINDOW, HOP = 32, 16

# Fixtures live in tests/support/fixtures/ so that tests can sit in folders by kind (unit,
# contract, e2e, bench) and still share them.
pytest_plugins = [
    "tests.support.fixtures.tools",
    "tests.support.fixtures.infra",
    "tests.support.fixtures.daemon",
    "tests.support.fixtures.ota",
    "tests.support.fixtures.archive",
    "tests.support.fixtures.sanity",
    "tests.support.fixtures.contract",
    "tests.support.fixtures.cnc",
]
KINDS = ("unit", "contract", "e2e", "bench")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with the kind of its folder, so `-m unit` / `-m "not e2e"` select."""
    root = Path(__file__).parent
    for item in items:
        parts = Path(str(item.fspath)).relative_to(root).parts
        if parts and parts[0] in KINDS:
            item.add_marker(getattr(pytest.mark, parts[0]))
            if parts[0] == "bench":  # each harness run takes minutes
                item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def recordings(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("recordings")
    return {
        "train": write_csv(root / "train.csv", currents(24000, seed=1)),
        "calib": write_csv(root / "calib.csv", currents(48000, seed=2)),
        "test": write_csv(
            root / "test.csv",
            currents(8000, seed=3, fault_from=4000),
            labels=["" if i < 4000 else "friction" for i in range(8000)],
        ),
    }


@pytest.fixture(scope="session")
def trained_model(recordings):
    from agent.core.features import FeatureSpec, Segmentation
    from exporter.data import fit_normalization, load_recordings, segment_all
    from exporter.model import TrainedModel
    from exporter.train import TrainSettings, train_autoencoder

    spec = FeatureSpec(
        channels=CHANNELS,
        units=("A",) * len(CHANNELS),
        sample_rate_hz=1000.0,
        segmentation=Segmentation(kind="window", length=WINDOW, hop=HOP),
        features=("raw",),
    )
    recs = load_recordings([recordings["train"]], CHANNELS)
    norm = fit_normalization(recs)
    seg = segment_all(spec, norm, recs)
    model, history = train_autoencoder(
        seg.features, TrainSettings(epochs=40, patience=10, bottleneck=6, seed=0)
    )
    return TrainedModel(model, spec, norm, history)


@pytest.fixture(scope="session")
def calibration_segments(trained_model, recordings):
    from exporter.data import load_recordings, segment_all

    recs = load_recordings([recordings["calib"]], CHANNELS)
    return segment_all(trained_model.spec, trained_model.normalization, recs).segments


@pytest.fixture(scope="session")
def built_bundle(trained_model, calibration_segments):
    from exporter.build import BuildSettings, build_bundle

    return build_bundle(
        trained_model, calibration_segments, BuildSettings(bundle_id="test-bundle", robot="r1")
    )


@pytest.fixture(scope="session")
def bundle_path(built_bundle, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "test.rapp"
    path.write_bytes(built_bundle.data)
    return path
