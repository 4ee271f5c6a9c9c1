"""Standardized attribution: the faulted channel wins even when the reconstruction fails
everywhere; manifests without the optional statistics still load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.core.bundle import BundleError
from agent.core.bundle.manifest import (
    calibration_quantiles,
    channel_error_stats,
    parse_manifest,
)
from agent.core.rapp import (
    attribution_weights,
    channel_attribution,
    channel_excess,
    fit_channel_standardizer,
)

C, L = 3, 16


def test_the_deviating_channel_wins_when_reconstruction_fails_everywhere():
    rng = np.random.default_rng(0)
    channels = np.repeat(np.arange(C), L)
    # calibration: channel 0 is always reconstructed loosely, 1 and 2 tightly
    x = rng.normal(size=(400, C * L))
    noise = np.r_[np.full(L, 0.5), np.full(2 * L, 0.05)]
    x_hat = x + rng.normal(size=x.shape) * noise
    scale = np.square(x_hat - x).mean(axis=0)
    weights = attribution_weights(channels, scale, C)
    stats = fit_channel_standardizer(x, x_hat, weights, channels)
    # a fault on channel 2 (its input leaves the normal profile); the model's output goes
    # off on every channel (2× its normal error), most on the loose channel 0 in absolute terms
    fault = rng.normal(size=(20, C * L))
    fault[:, 2 * L :] += 3.0
    wild = fault + rng.normal(size=fault.shape) * noise * 2.0
    legacy = channel_attribution(fault, wild, attribution_weights(channels, np.ones(C * L), C))
    assert (legacy.argmax(axis=1) != 2).mean() > 0.5, "raw shares name the wrong channel"
    excess = channel_excess(fault, wild, weights, channels, stats)
    assert (excess.argmax(axis=1) == 2).all()
    assert (excess >= 0).all()
    normal = channel_excess(x[:50], x_hat[:50], weights, channels, stats)
    assert np.median(normal) < 1.0, "normal windows sit near zero excess"


def _manifest(program_bundles) -> dict:
    from agent.core.bundle import load_bundle

    return json.loads(json.dumps(dict(load_bundle(program_bundles[1]).manifest.raw)))


def test_new_bundles_carry_the_optional_statistics(program_bundles):
    manifest = parse_manifest(json.dumps(_manifest(program_bundles)).encode())
    assert manifest.attribution is not None
    n_features = manifest.input.feature_dim
    assert len(manifest.attribution.feature_mean) == n_features
    for artifact in manifest.artifacts:
        levels, values = calibration_quantiles(artifact, "nap")
        assert levels[0] == 0.0 and levels[-1] == 1.0 and list(values) == sorted(values)
        assert channel_error_stats(artifact, manifest.input.n_channels) is not None


def test_old_bundles_without_the_fields_still_parse(program_bundles):
    raw = _manifest(program_bundles)
    raw.pop("attribution")
    for artifact in raw["artifacts"]:
        artifact["calibration"].pop("quantiles")
        artifact["calibration"].pop("channel_error")
    manifest = parse_manifest(json.dumps(raw).encode())
    assert manifest.attribution is None
    artifact = manifest.artifacts[0]
    assert channel_error_stats(artifact, manifest.input.n_channels) is None
    levels, _ = calibration_quantiles(artifact, "nap")  # from p50/p90/p99/p999
    assert levels == (0.5, 0.9, 0.99, 0.999)


def test_a_malformed_attribution_field_is_rejected_with_its_path(program_bundles):
    raw = _manifest(program_bundles)
    raw["attribution"]["feature_std"] = [1.0, -1.0]
    with pytest.raises(BundleError, match=r"attribution\.feature_std"):
        parse_manifest(json.dumps(raw).encode())
