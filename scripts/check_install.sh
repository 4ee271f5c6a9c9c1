#!/usr/bin/env bash
# docs/install.md, performed in a temporary root as far as a container allows: a fresh venv
# under <root>/opt/rapp-agent with a non-editable install of this tree (so the unit and the
# examples must come from the package data), `rapp-agent install-unit --prefix <root>`, the
# credential, CA, trust key and first bundles an operator provides, then: file modes, the
# installed unit is the packaged one, `systemd-analyze verify` is clean, and
# `rapp-agent run --check` passes on every example config after its documented setup.
# The configs' absolute paths are rewritten into the root and /dev/null stands in for the
# USB serial adapter. Not done: starting the unit (no systemd as PID 1), real hardware, TLS
# to a broker.
#
# Usage: scripts/check_install.sh            (PYTHON=python3.11, RAPP_CHECK_KEEP=1 keeps the root)
# Exit 0 when every step passed; the first failing step is named on stderr.
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
ROOT="$(mktemp -d "${TMPDIR:-/tmp}/rapp-install.XXXXXX")"
cleanup() {
  if [ -n "${RAPP_CHECK_KEEP:-}" ]; then echo "check_install: kept $ROOT"; else rm -rf "$ROOT"; fi
}
trap cleanup EXIT

step() { printf '== %s\n' "$*"; }
fail() { printf 'check_install: FAIL: %s\n' "$*" >&2; exit 1; }
mode_is() {  # path expected-mode
  [ -e "$1" ] || fail "$1 is missing"
  local got
  got="$(stat -c %a "$1")"
  [ "$got" = "$2" ] || fail "$1 has mode $got, expected $2"
}

SYSTEMD_ANALYZE="$(command -v systemd-analyze)" || fail "systemd-analyze not found: apt-get install systemd"
VENV="$ROOT/opt/rapp-agent/venv"
ETC="$ROOT/etc/rapp-agent"
UNIT="$ROOT/etc/systemd/system/rapp-agent.service"
BUILD="$ROOT/build-machine"   # what the operator prepares elsewhere and copies over
mkdir -p "$BUILD" "$ROOT/src"
cd "$ROOT"  # not the checkout: `python -c 'import agent'` must find the installed package

step "1. venv under /opt/rapp-agent, pip install (no extras)"
"$PYTHON" -m venv "$VENV"
tar -C "$SRC" --exclude='./.venv*' --exclude=./.git --exclude=./build --exclude=./dist \
  --exclude='*.egg-info' --exclude=./tests --exclude=./benchmarks --exclude='__pycache__' \
  -cf - . | tar -C "$ROOT/src" -xf -
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$ROOT/src" 2>&1 \
  | grep -v "^WARNING: Location '" || true
"$VENV/bin/python" -c "import agent" || fail "pip install $ROOT/src did not install the agent"
"$VENV/bin/rapp-agent" --version
PKG="$("$VENV/bin/python" -c 'import agent, pathlib; print(pathlib.Path(agent.__file__).parent)')"
case "$PKG" in "$VENV"/*) ;; *) fail "agent imported from $PKG, not from the new venv" ;; esac

step "2. rapp-agent install-unit --prefix (a dry run first: it must change nothing)"
"$VENV/bin/rapp-agent" install-unit --prefix "$ROOT" --dry-run >/dev/null
[ ! -e "$ROOT/etc" ] || fail "install-unit --dry-run wrote into $ROOT/etc"
"$VENV/bin/rapp-agent" install-unit --prefix "$ROOT"
again="$("$VENV/bin/rapp-agent" install-unit --prefix "$ROOT")"
if grep -qE '^(create|update|secure) ' <<<"$again"; then
  fail "a second install-unit changed files: $again"
fi
cmp -s "$UNIT" "$SRC/systemd/rapp-agent.service" || fail "the installed unit is not systemd/rapp-agent.service"
cmp -s "$ETC/agent.toml" "$SRC/examples/agent-serial.toml" || fail "agent.toml is not the serial example"

step "3. the config: the examples as they are"
step "4. credentials and TLS"
install -m 0600 /dev/null "$ETC/credentials/mqtt-password"
printf 'not-a-real-password\n' >"$ETC/credentials/mqtt-password"
# A throwaway CA stands in for the plant's.
"$VENV/bin/python" - "$BUILD/plant-ca.pem" <<'EOF'
import datetime
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "check_install plant CA")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (
    x509.CertificateBuilder().subject_name(name).issuer_name(name)
    .public_key(key.public_key()).serial_number(x509.random_serial_number())
    .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    .sign(key, hashes.SHA256())
)
open(sys.argv[1], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
EOF
install -m 0644 "$BUILD/plant-ca.pem" "$ETC/plant-ca.pem"

step "5. trust key (keygen on the build machine, the .pub on the device)"
"$VENV/bin/rapp-export" keygen --out "$BUILD/release.key"
install -m 0644 "$BUILD/release.key.pub" "$ETC/release.key.pub"

step "6. first bundles, signed (the shipped model stands in for a trained one)"
for robot in kr16 arm2; do
  "$VENV/bin/rapp-export" sign --bundle "$PKG/data/default.rapp" --key "$BUILD/release.key" \
    --out "$BUILD/$robot.rapp"
  install -m 0644 "$BUILD/$robot.rapp" "$ETC/bundles/$robot.rapp"
done
mkdir -p "$ROOT/dev/serial/by-id"
ln -s /dev/null "$ROOT/dev/serial/by-id/usb-rapp-acq-if00"

step "files in place"
[ -x "$VENV/bin/rapp-agent" ] || fail "$VENV/bin/rapp-agent is not executable"
mode_is "$UNIT" 644
mode_is "$ETC" 755
mode_is "$ETC/agent.toml" 644
mode_is "$ETC/six_axis_arm.toml" 644
mode_is "$ETC/credentials" 700
mode_is "$ETC/credentials/mqtt-password" 600
mode_is "$ETC/plant-ca.pem" 644
mode_is "$ETC/release.key.pub" 644
mode_is "$ETC/bundles" 755
mode_is "$ETC/bundles/kr16.rapp" 644
[ ! -e "$ETC/release.key" ] || fail "the private release key is on the device"
[ ! -e "$ROOT/var/lib/rapp-agent" ] || fail "/var/lib/rapp-agent was pre-created (systemd makes it)"
credential="$(sed -n 's/^LoadCredential=\([^:]*\):\(.*\)$/\1 \2/p' "$UNIT")"
[ -n "$credential" ] || fail "the unit has no LoadCredential=NAME:PATH"
read -r cred_name cred_path <<<"$credential"
[ -f "$ROOT$cred_path" ] || fail "LoadCredential source $cred_path is missing"
grep -q "^password_credential = \"$cred_name\"" "$ETC/agent.toml" \
  || fail "agent.toml does not name the unit's credential $cred_name"

step "systemd-analyze verify (ExecStart pointed into the root)"
mkdir -p "$ROOT/verify"
exec_start="$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$UNIT")"
[ "$exec_start" = /opt/rapp-agent/venv/bin/rapp-agent ] || fail "ExecStart is $exec_start"
[ -x "$ROOT$exec_start" ] || fail "ExecStart $exec_start is not in the venv of step 1"
sed "s|^ExecStart=/opt/|ExecStart=$ROOT/opt/|" "$UNIT" >"$ROOT/verify/rapp-agent.service"
verify="$("$SYSTEMD_ANALYZE" verify "$ROOT/verify/rapp-agent.service" 2>&1)" \
  || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify is not clean: $verify"
echo "verify: clean"

step "7. rapp-agent run --check on every example config"
into_root() {  # config -> the same config with its files under $ROOT
  sed -e "s|\"/etc/rapp-agent/|\"$ETC/|g" -e "s|\"/var/lib/rapp-agent|\"$ROOT/var/lib/rapp-agent|g" \
    -e "s|\"/dev/serial/|\"$ROOT/dev/serial/|g" "$1"
}
checked=0
for example in "$PKG"/data/examples/agent-*.toml; do
  name="$(basename "$example")"
  if [ "$name" = agent-serial.toml ]; then
    source_config="$ETC/agent.toml"   # the one install-unit put in place
  else
    source_config="$example"
  fi
  config="$ETC/check-$name"
  into_root "$source_config" >"$config"
  if grep -v '^[[:space:]]*#' "$config" | grep -qE '"/(etc|var/lib)/rapp-agent'; then
    fail "$name names a path the rewrite missed"
  fi
  CREDENTIALS_DIRECTORY="$ETC/credentials" "$VENV/bin/rapp-agent" run --config "$config" --check \
    || fail "rapp-agent run --check failed on $name after its setup"
  checked=$((checked + 1))
done
[ "$checked" -ge 3 ] || fail "only $checked example configs in the package"
[ ! -e "$ROOT/var/lib/rapp-agent" ] || fail "--check created the state directory"
echo "check_install: OK ($checked example configs)"
