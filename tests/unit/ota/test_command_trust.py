"""Unit tests of the OTA trust boundary's logic: the signed command encoding, who may command
an agent (signature, expiry, target), version order and the downgrade rule, the new [ota]
keys, and the pusher's side (signing, --rollback, --expires-in)."""

from __future__ import annotations

import base64
import dataclasses
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import parse_config
from agent.core.bundle import TrustPolicy
from agent.core.bundle.loader import trusted_signer
from agent.core.errors import ConfigError
from agent.core.tables import Table
from agent.ota.authenticate import CommandAuthenticator
from agent.ota.command import SIGNING_TAG, CommandTarget, TransferCommand, parse_command
from agent.ota.errors import CommandRefused, OtaError, TransferError
from agent.ota.settings import OtaSettings
from agent.ota.store import ModelStore
from agent.ota.versions import ServingVersions, is_newer, parse_version
from exporter.cli import parser as export_parser
from exporter.keys import public_b64, sign_command
from exporter.push import BrokerOptions, PushError, push
from tests.support.agents_inprocess import validate

DATA = bytes(range(256)) * 5
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def release() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _policy(key: Ed25519PrivateKey, allow_unsigned: bool = False) -> TrustPolicy:
    return TrustPolicy((base64.b64decode(public_b64(key)),), allow_unsigned=allow_unsigned)


def _command(**fields) -> TransferCommand:
    fields.setdefault("target", CommandTarget("device", "d"))
    fields.setdefault("expires", NOW + 600)
    return TransferCommand.for_bundle(DATA, "t1", "b", "3", chunk_size=500, **fields)


def _auth(policy: TrustPolicy, now: float = NOW) -> CommandAuthenticator:
    return CommandAuthenticator(policy, "d", ("hall3",), clock=lambda: now)


def _wire(command: TransferCommand) -> TransferCommand:
    """Through JSON, as the agent receives it."""
    return parse_command(json.dumps(command.to_json()).encode())


def _refused(auth: CommandAuthenticator, command: TransferCommand, **kw) -> str:
    with pytest.raises(CommandRefused) as info:
        auth.check(_wire(command), **kw)
    return info.value.kind


# -- the signed encoding ---------------------------------------------------------------------


def test_a_signed_command_survives_json_and_validates_against_the_schema(release):
    signed = sign_command(_command(), release)
    validate(signed.to_json(), "ota_cmd")
    wire = _wire(signed)
    assert wire == signed
    _auth(_policy(release)).check(wire)
    # key order and whitespace of the payload do not matter: the agent rebuilds the bytes
    shuffled = dict(reversed(list(signed.to_json().items())))
    _auth(_policy(release)).check(parse_command(json.dumps(shuffled, indent=3).encode()))


def test_the_signature_covers_every_field_the_agent_acts_on(release):
    signed = sign_command(_command(url=None), release)
    auth = _auth(_policy(release))
    changes = {
        "target": CommandTarget("group", "hall3"),
        "transfer_id": "t2",
        "robot": "arm1",
        "bundle_id": "other",
        "version": "30",
        "size": signed.size - 1,
        "sha256": "0" * 64,
        "chunk_size": 512,
        "chunks": (*signed.chunks[:-1], "0" * 64),
        "url": "https://example.invalid/b.rapp",
        "rollback": True,
        "expires": signed.expires + 1,
    }
    assert set(changes) | {"signature"} == {f.name for f in dataclasses.fields(TransferCommand)}
    for name, value in changes.items():
        forged = dataclasses.replace(signed, **{name: value})
        assert _refused(auth, forged) == "bad_signature", name


def test_command_and_bundle_signatures_cannot_stand_in_for_each_other(release):
    signed = sign_command(_command(), release)
    body = signed.signed_bytes()
    assert body.startswith(SIGNING_TAG)
    policy = _policy(release)
    assert trusted_signer(body, signed.signature, policy) is not None
    assert trusted_signer(body[len(SIGNING_TAG) :], signed.signature, policy) is None
    # a manifest signature over JSON bytes never verifies as a command signature
    manifest_sig = release.sign(body[len(SIGNING_TAG) :])
    forged = dataclasses.replace(signed, signature=manifest_sig)
    assert _refused(_auth(policy), forged) == "bad_signature"


def test_malformed_signatures_and_fields_are_parse_errors(release):
    good = sign_command(_command(), release).to_json()
    for change, match in (
        ({"signature": "not base64!"}, "base64"),
        ({"signature": base64.b64encode(b"short").decode()}, "not 64"),
        ({"target": {"kind": "planet", "id": "x"}}, "target"),
        ({"target": {"kind": "device", "id": "a/b"}}, "target"),
        ({"rollback": "yes"}, "rollback"),
        ({"expires": "soon"}, "expires"),
        ({"version": 3}, "version"),
        ({"url": "ftp://x"}, "file:// and https://"),
    ):
        with pytest.raises(TransferError, match=match):
            parse_command(json.dumps({**good, **change}).encode())
    with pytest.raises(TransferError, match="over"):
        parse_command(b" " * (600 * 1024))


# -- who may command this agent ---------------------------------------------------------------


def test_unsigned_wrongly_signed_expired_and_foreign_commands_are_refused(release):
    other = Ed25519PrivateKey.generate()
    auth = _auth(_policy(release))
    assert _refused(auth, _command()) == "unsigned"
    assert _refused(auth, sign_command(_command(), other)) == "bad_signature"
    expired = sign_command(_command(expires=NOW - 1), release)
    assert _refused(auth, expired) == "expired"
    auth.check(_wire(expired), resumed=True)  # accepted before the restart: expiry done
    assert _refused(auth, sign_command(_command(expires=None), release)) == "expired"
    for target in (CommandTarget("device", "e"), CommandTarget("group", "hall4"), None):
        assert _refused(auth, sign_command(_command(target=target), release)) == "not_for_me"
    auth.check(_wire(sign_command(_command(target=CommandTarget("group", "hall3")), release)))
    no_keys = _auth(TrustPolicy((), allow_unsigned=False))
    assert _refused(no_keys, sign_command(_command(), release)) == "unsigned"


def test_allow_unsigned_accepts_unsigned_commands_but_not_unsigned_rollbacks(release):
    auth = _auth(_policy(release, allow_unsigned=True))
    auth.check(_wire(_command()))
    auth.check(_wire(_command(target=None, expires=None)))  # an old pusher's command
    assert _refused(auth, _command(rollback=True)) == "unsigned"
    assert _refused(auth, sign_command(_command(), Ed25519PrivateKey.generate())) == (
        "bad_signature"
    )
    assert _refused(auth, _command(expires=NOW - 5)) == "expired"
    assert _refused(auth, _command(target=CommandTarget("device", "e"))) == "not_for_me"


# -- versions ---------------------------------------------------------------------------------


def test_versions_compare_as_dotted_integers():
    assert parse_version("1") < parse_version("2") < parse_version("10")
    assert parse_version("1.2") < parse_version("1.10") < parse_version("2")
    assert parse_version("1.0") == parse_version("1") == parse_version("1.0.0")
    assert is_newer("10", "9") and not is_newer("9", "10") and not is_newer("2", "2.0")
    assert not is_newer("nan", "1") and not is_newer("2", "nan")
    for bad in ("", "nan", "v2", "1.x", "1..2", " 1", "1.", "-1", "1e3", "١"):
        with pytest.raises(OtaError, match="not a dotted integer"):
            parse_version(bad)


class _Bundle:
    def __init__(self, bundle_id: str, version: str) -> None:
        manifest = type("M", (), {"bundle_id": bundle_id, "bundle_version": version})
        self.bundle = type("B", (), {"manifest": manifest})


def test_serving_versions_refuse_downgrades_unless_a_signed_rollback_says_so(tmp_path):
    store = ModelStore(tmp_path)
    versions = ServingVersions(store)
    versions.note_configured("arm1", [_Bundle("m", "9")])  # type: ignore[list-item]
    assert versions.serving("arm1", "m") == "9" and versions.serving("arm1", "new") is None
    for old in ("2", "1", "9", "9.0"):
        with pytest.raises(OtaError, match="not newer than version 9"):
            versions.check("arm1", "m", old, rollback=False)
    versions.check("arm1", "m", "10", rollback=False)
    versions.check("arm1", "m", "2", rollback=True)
    versions.check("arm1", "new", "1", rollback=False)  # a new bundle id takes any version
    with pytest.raises(OtaError, match="not a dotted integer"):
        versions.check("arm1", "m", "nan", rollback=True)
    # installed over the air: the pointer's version counts, also after a rollback
    a = store.put("arm1", b"a")
    store.activate("arm1", "m", a, "10", "t1")
    store.commit("arm1", "m")
    store.activate("arm1", "m", store.put("arm1", b"b"), "12", "t2")
    assert versions.serving("arm1", "m") == "12"
    store.rollback("arm1", "m")
    assert versions.serving("arm1", "m") == "10"
    with pytest.raises(OtaError, match="not newer than version 10"):
        versions.check("arm1", "m", "9", rollback=False)
    store.rollback("arm1", "m")
    assert versions.serving("arm1", "m") == "9", "back to the configured bundle"


def test_check_command_resolves_the_only_robot_before_any_download(tmp_path):
    versions = ServingVersions(ModelStore(tmp_path))
    versions.note_configured("arm1", [_Bundle("b", "9")])  # type: ignore[list-item]
    with pytest.raises(OtaError, match="not newer"):
        versions.check_command(_command())  # robot None, the device's only robot
    versions.check_command(_command(rollback=True))
    versions.note_configured("arm2", [_Bundle("b", "1")])  # type: ignore[list-item]
    versions.check_command(_command())  # two robots: decided once the manifest is read
    with pytest.raises(OtaError, match="not newer"):
        versions.check_command(_command(robot="arm1"))
    with pytest.raises(OtaError, match="not a dotted integer"):
        versions.check_command(dataclasses.replace(_command(), version="3-beta"))


# -- [ota] keys -------------------------------------------------------------------------------


BASE = {
    "agent": {"device_id": "d"},
    "robots": [{"id": "r", "bundle": "default", "source": {"kind": "simulator"}}],
}


def test_new_ota_keys_have_safe_defaults_and_are_validated(tmp_path):
    ota = parse_config(BASE).ota
    assert (ota.max_pending, ota.file_url_root) == (4, None)
    assert ota.url_timeout_s == 120.0 and ota.verify_timeout_s == 300.0
    table = {"max_pending": 2, "url_timeout_s": 5, "file_url_root": str(tmp_path)}
    settings = OtaSettings.from_table(Table(table, "ota"))
    assert settings == parse_config({**BASE, "ota": table}).ota
    assert settings.file_url_root == tmp_path and settings.url_timeout_s == 5.0
    relative = OtaSettings.from_table(Table({"file_url_root": "in"}, "ota"), tmp_path)
    assert relative.file_url_root == tmp_path / "in"
    for bad, match in (
        ({"file_url_root": "incoming"}, "must be absolute"),
        ({"file_url_root": ""}, "must not be empty"),
        ({"max_pending": 0}, "between 1 and 64"),
        ({"url_timeout_s": 0}, "between 1"),
    ):
        with pytest.raises(ConfigError, match=match):
            OtaSettings.from_table(Table(bad, "ota"))


# -- the pusher -------------------------------------------------------------------------------


def test_push_refuses_an_unsigned_rollback_and_a_non_positive_expiry():
    options = BrokerOptions("127.0.0.1", 1)
    with pytest.raises(PushError, match="--rollback needs --key"):
        push(b"x", options, device="d", rollback=True, log=lambda _m: None)
    with pytest.raises(PushError, match="positive"):
        push(b"x", options, device="d", expires_in=0, key=Ed25519PrivateKey.generate())
    with pytest.raises(PushError, match="--chunk-size 0"):
        push(b"x", options, device="d", chunk_size=0)


def test_push_cli_takes_key_rollback_and_expiry(tmp_path):
    args = export_parser().parse_args(
        ["push", "--bundle", "b.rapp", "--broker", "h:1", "--device", "d",
         "--key", "release.key", "--rollback", "--expires-in", "90"]
    )  # fmt: skip
    assert (str(args.key), args.rollback, args.expires_in) == ("release.key", True, 90.0)
    args = export_parser().parse_args(["push", "--bundle", "b", "--broker", "h:1", "--group", "g"])
    assert (args.key, args.rollback, args.expires_in) == (None, False, None)


def test_push_refuses_a_command_too_big_for_agents_to_read(monkeypatch):
    import exporter.push as push_module

    monkeypatch.setattr(push_module, "bundle_identity", lambda data: ("b", "3"))
    with pytest.raises(PushError, match="use a larger --chunk-size"):
        push(bytes(10_000), BrokerOptions("h"), device="d", chunk_size=1, log=lambda _m: None)


def test_expiry_defaults_to_the_push_timeout_plus_a_margin(release, monkeypatch):
    """What push() publishes, captured before any network I/O."""
    import exporter.push as push_module

    captured = {}

    def fake_client(options, client_id):
        raise PushError("stop here")

    def fake_sign(command, key):
        captured["command"] = command
        return sign_command(command, key)

    monkeypatch.setattr(push_module, "_client", fake_client)
    monkeypatch.setattr(push_module, "sign_command", fake_sign)
    monkeypatch.setattr(push_module, "bundle_identity", lambda data: ("b", "3"))
    with pytest.raises(PushError, match="stop here"):
        push(DATA, BrokerOptions("h"), group="hall3", key=release, timeout=100, log=print)
    command = captured["command"]
    assert command.target == CommandTarget("group", "hall3") and not command.rollback
    assert abs(command.expires - (time.time() + 100 + push_module.EXPIRY_MARGIN_S)) < 5
