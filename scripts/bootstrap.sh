#!/usr/bin/env bash
# Shared setup for the quick-start commands and CI: system packages the tests and the demo
# use, and a virtualenv in .venv with the project and its extras. Idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RAPP_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
# chromium: the status page test renders the agent's [http] page headless
APT_PACKAGES=(mosquitto mosquitto-clients socat gcc systemd python3-venv chromium)

need_apt=()
for tool in mosquitto mosquitto_sub socat gcc systemd-analyze chromium; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then need_apt+=(venv); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing system packages (missing: ${need_apt[*]})"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${APT_PACKAGES[@]}" >/dev/null
fi
# The Debian mosquitto package enables a system broker; tests start their own on free
# loopback ports, so the system one is not needed (and may not be running in a container).

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
EXTRAS="${RAPP_EXTRAS:-export,test,demo,litert,tflite-export,sparkplug}"
if [[ ",$EXTRAS," == *",export,"* || ",$EXTRAS," == *"tflite-export"* ]]; then
  # torch first and pinned: the CPU build; a looser spec could pull a multi-GB CUDA build.
  "${PIP[@]}" "torch==2.13.0"
fi
"${PIP[@]}" -e "$ROOT[$EXTRAS]"
