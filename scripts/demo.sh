#!/usr/bin/env bash
# The main job on embedded defaults: the agent's live demo (simulator → emulated serial board →
# agent with the shipped model → alarms over MQTT), then a plot. Installs only what the agent
# and the demo need (no torch/tensorflow).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAPP_EXTRAS="${RAPP_EXTRAS:-demo}" "$ROOT/scripts/bootstrap.sh"
exec "$ROOT/.venv/bin/rapp-agent" demo "$@"
