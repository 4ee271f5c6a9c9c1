#!/usr/bin/env bash
# The full test suite, as CI runs it: lint, pytest over tests/, then the backend contract
# again in a runtime-only venv with tflite-runtime (numpy < 2, no torch/TF) — the fallback
# interpreter armv7 boxes use — on the bundle and references the first run saved.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

CONTRACT_DIR="$(mktemp -d "${TMPDIR:-/tmp}/rapp-contract.XXXXXX")"
trap 'rm -rf "$CONTRACT_DIR"' EXIT
RAPP_CONTRACT_SAVE="$CONTRACT_DIR" .venv/bin/python -m pytest "$@"

if [ ! -f "$CONTRACT_DIR/contract.rapp" ]; then
  # A subset run that did not touch the backend contract: nothing to replay.
  if [ -n "${CI:-}" ]; then
    echo "test.sh: the contract bundle was not saved; CI must run the whole suite" >&2
    exit 1
  fi
  exit 0
fi
TFLITE_VENV="${RAPP_TFLITE_VENV:-$ROOT/.venv-tflite}"
if [ ! -x "$TFLITE_VENV/bin/python" ]; then
  echo "test.sh: creating $TFLITE_VENV (tflite-runtime, numpy<2)"
  python3 -m venv "$TFLITE_VENV"
fi
"$TFLITE_VENV/bin/python" -m pip install -q --disable-pip-version-check \
  "numpy<2" "tflite-runtime==2.14.*" "cryptography>=42" "paho-mqtt>=2.0,<3" "pyserial>=3.5" \
  "jsonschema>=4.20" pytest
"$TFLITE_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT"
echo "test.sh: backend contract on tflite-runtime"
RAPP_CONTRACT_FIXTURE="$CONTRACT_DIR" RAPP_EXPECT_LITERT=tflite-runtime \
  "$TFLITE_VENV/bin/python" -m pytest -q -p no:cacheprovider -k litert \
  tests/contract/test_backends.py tests/contract/test_runtime_fallback.py
