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

# Two pytest-xdist workers, one test file at a time each (a file's module fixtures stay in one
# process; session fixtures are built by each worker that needs them): most of the suite waits
# on real-time replays, brokers and child processes, so two workers fit the 2-core box. Files
# go out in collection order, so the minutes-long bench harness (tests/bench, collected
# first) starts at once and the other worker takes the rest. Not --dist loadgroup: with
# pytest 9 its groups are ignored. RAPP_TEST_WORKERS=0 runs in one process (e.g. for --pdb).
WORKERS="${RAPP_TEST_WORKERS:-2}"
XDIST=()
if [ "$WORKERS" != 0 ]; then
  HAS_XDIST='from importlib.metadata import version; from packaging.version import Version as V
assert V(version("pytest-xdist")) >= V("3.8")'
  if ! .venv/bin/python -c "$HAS_XDIST" 2>/dev/null; then
    .venv/bin/python -m pip install -q --disable-pip-version-check "pytest-xdist>=3.8,<4"
  fi
  XDIST=(-n "$WORKERS" --dist loadfile --no-loadscope-reorder)
fi
CONTRACT_DIR="$(mktemp -d "${TMPDIR:-/tmp}/rapp-contract.XXXXXX")"
trap 'rm -rf "$CONTRACT_DIR"' EXIT
RAPP_CONTRACT_SAVE="$CONTRACT_DIR" .venv/bin/python -m pytest ${XDIST[@]+"${XDIST[@]}"} "$@"

if [ ! -f "$CONTRACT_DIR/contract.rapp" ]; then
  # A subset run that did not touch the backend contract: nothing to replay.
  if [ -n "${CI:-}" ]; then
    echo "test.sh: the contract bundle was not saved; CI must run the whole suite" >&2
    exit 1
  fi
  exit 0
fi
# The runtime-only venv lives outside the checkout (CI clones afresh for every run) and is
# installed into again only when these requirements change; the checkout goes on PYTHONPATH
# instead of being installed, so one venv serves any checkout. flock: two runs at once.
TFLITE_REQUIREMENTS=("numpy<2" "tflite-runtime==2.14.*" "cryptography>=42" "paho-mqtt>=2.0,<3"
  "pyserial>=3.5" "jsonschema>=4.20" pytest)
TFLITE_VENV="${RAPP_TFLITE_VENV:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/rapp-edge/venv-tflite}"
mkdir -p "$(dirname "$TFLITE_VENV")"
(
  flock 9
  if ! "$TFLITE_VENV/bin/python" -c "" 2>/dev/null; then  # missing, or its python is gone
    echo "test.sh: creating $TFLITE_VENV (tflite-runtime, numpy<2)"
    rm -rf "$TFLITE_VENV"
    python3 -m venv "$TFLITE_VENV"
  fi
  STAMP="$TFLITE_VENV/.rapp-requirements"
  if [ "$(cat "$STAMP" 2>/dev/null)" != "${TFLITE_REQUIREMENTS[*]}" ]; then
    "$TFLITE_VENV/bin/python" -m pip install -q --disable-pip-version-check \
      "${TFLITE_REQUIREMENTS[@]}"
    printf '%s' "${TFLITE_REQUIREMENTS[*]}" >"$STAMP"
  fi
) 9>"$TFLITE_VENV.lock"
echo "test.sh: backend contract on tflite-runtime"
RAPP_CONTRACT_FIXTURE="$CONTRACT_DIR" RAPP_EXPECT_LITERT=tflite-runtime PYTHONPATH="$ROOT" \
  "$TFLITE_VENV/bin/python" -m pytest -q -p no:cacheprovider -k litert \
  tests/contract/test_backends.py tests/contract/test_runtime_fallback.py
