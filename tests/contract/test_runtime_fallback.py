"""Which TFLite interpreter the LiteRT backend picked, checked against what the run expects.

scripts/test.sh runs the contract suite a second time in a runtime-only venv that has
tflite-runtime (numpy < 2) instead of ai-edge-litert, with ``RAPP_EXPECT_LITERT=tflite-runtime``;
this test proves that second run really exercised the fallback, not ai-edge-litert again.
"""

from __future__ import annotations

import os

from tests.support.fixtures.contract import CASES, make_backend

EXPECT_ENV = "RAPP_EXPECT_LITERT"


def test_litert_backend_uses_the_expected_interpreter(bundle) -> None:
    expected = os.environ.get(EXPECT_ENV, "ai-edge-litert")
    case = next(c for c in CASES if c.backend == "litert")
    backend = make_backend(case, bundle)
    assert backend.runtime == expected
