"""Small deliberately bad models for the sanity-check tests, trained in seconds on the
synthetic currents the session fixtures use (tests/synthetic.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.synthetic import CHANNELS, currents


def features_of(spec, normalization, samples: np.ndarray):
    from agent.features import segment_recording

    return segment_recording(spec, normalization, samples)


@pytest.fixture(scope="session")
def one_epoch_model(trained_model):
    """The session model's recipe (same data, spec, bottleneck) stopped after one epoch."""
    from exporter.model import TrainedModel
    from exporter.train import TrainSettings, train_autoencoder

    x = features_of(trained_model.spec, trained_model.normalization, currents(24000, 1)).features
    model, history = train_autoencoder(x, TrainSettings(epochs=1, bottleneck=6, seed=0))
    return TrainedModel(model, trained_model.spec, trained_model.normalization, history)


@pytest.fixture(scope="session")
def row_spec():
    """One-sample windows: six features that the six currents span fully, so a bottleneck
    as wide as the input can (and does) learn the identity map."""
    from agent.features import FeatureSpec, Segmentation

    return FeatureSpec(
        channels=CHANNELS,
        units=("A",) * len(CHANNELS),
        sample_rate_hz=1000.0,
        segmentation=Segmentation(kind="window", length=1, hop=1),
        features=("raw",),
    )


def _row_model(row_spec, bottleneck: int):
    from agent.features import Normalization
    from exporter.model import TrainedModel
    from exporter.train import TrainSettings, train_autoencoder

    samples = currents(6000, seed=1)
    norm = Normalization.fit(samples)
    x = features_of(row_spec, norm, samples).features
    settings = TrainSettings(n_layers=1, bottleneck=bottleneck, epochs=30, patience=10, seed=0)
    model, history = train_autoencoder(x, settings)
    return TrainedModel(model, row_spec, norm, history)


@pytest.fixture(scope="session")
def identity_like_model(row_spec):
    """Bottleneck as wide as the input (6 → 6 → 6)."""
    return _row_model(row_spec, bottleneck=6)


@pytest.fixture(scope="session")
def narrow_row_model(row_spec):
    """Same data and budget, bottleneck 2 of 6: the contrast the identity check must pass."""
    return _row_model(row_spec, bottleneck=2)


@pytest.fixture(scope="session")
def row_calibration(identity_like_model):
    """Held-out normal rows (another seed) split into NAP-fit and scored halves."""
    segs = features_of(
        identity_like_model.spec, identity_like_model.normalization, currents(4000, seed=2)
    ).segments
    return segs[0::2], segs[1::2]
