"""The bundle's alarm defaults: the clear hold is sized from the segmentation."""

from __future__ import annotations

import json

import pytest

from agent.core.bundle import BundleError, load_bundle
from agent.core.bundle.manifest import (
    CLEAR_HOLD_S,
    MIN_CLEAR_WINDOWS,
    clear_windows_for,
    parse_manifest,
)
from agent.core.features import FeatureSpec, Segmentation
from agent.models import default_bundle_path


def spec(segmentation: Segmentation, rate: float = 1000.0) -> FeatureSpec:
    return FeatureSpec(("J1",), ("A",), rate, segmentation)


def test_clear_windows_span_the_hold_for_windows_and_five_cycles() -> None:
    assert CLEAR_HOLD_S == 2.5
    assert clear_windows_for(spec(Segmentation("window", 64, 32))) == 79  # 2.528 s
    assert clear_windows_for(spec(Segmentation("window", 32, 16))) == 157
    assert clear_windows_for(spec(Segmentation("window", 64, 64), rate=10.0)) == MIN_CLEAR_WINDOWS
    cycles = Segmentation("cycle", 64, 1, min_samples=2200, max_samples=6600)
    assert clear_windows_for(spec(cycles)) == MIN_CLEAR_WINDOWS


def test_build_writes_the_sized_value(built_bundle) -> None:
    assert built_bundle.manifest["alarm"]["clear_windows"] == 157  # window 32 / hop 16
    assert load_bundle(built_bundle.data).manifest.alarm.clear_windows == 157


def test_bundles_without_the_field_get_it_sized_and_a_bad_value_is_refused(built_bundle):
    raw = json.loads(json.dumps(built_bundle.manifest))
    del raw["alarm"]["clear_windows"]
    assert parse_manifest(json.dumps(raw).encode()).alarm.clear_windows == 157
    raw["alarm"]["clear_windows"] = 0
    with pytest.raises(BundleError, match=r"alarm\.clear_windows = 0: must be ≥ 1"):
        parse_manifest(json.dumps(raw).encode())


def test_the_shipped_cycle_bundle_clears_after_five_cycles() -> None:
    bundle = load_bundle(default_bundle_path().read_bytes())
    assert bundle.manifest.input.segmentation.kind == "cycle"
    assert bundle.manifest.alarm.clear_windows == MIN_CLEAR_WINDOWS
