"""Why the agent cannot reach its broker is logged, once per reason (TLS, refused)."""

from __future__ import annotations

import datetime
import ipaddress
import logging

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.sinks.mqtt.link import MqttLink
from agent.sinks.mqtt.payloads import AgentIdentity, build_status
from agent.sinks.mqtt.settings import MqttSettings, TlsSettings
from agent.sinks.outbox import Outbox
from tests.support.broker import MosquittoBroker, free_port, wait_until


def _link(tmp_path, settings: MqttSettings) -> MqttLink:
    outbox = Outbox.open(tmp_path / "outbox.sqlite3")
    identity = AgentIdentity.create(settings.device_id, "0")
    return MqttLink(settings, outbox, lambda state: build_status(state, identity))


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _self_signed(folder) -> tuple[str, str]:
    """A certificate for 127.0.0.1 that no CA vouches for."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue-broker")])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(san, False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "broker.crt", folder / "broker.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def test_tls_handshake_failure_is_logged_with_its_reason(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    broker = MosquittoBroker(
        tmp_path / "tls-broker",
        extra_config=[f"listener {port} 127.0.0.1", f"certfile {cert}", f"keyfile {key}"],
    )
    broker.start()
    settings = MqttSettings(
        host="127.0.0.1", port=port, device_id="d1", tls=TlsSettings(),
        reconnect_min_delay=0.1, reconnect_max_delay=0.2,
    )  # fmt: skip
    link = _link(tmp_path, settings)
    with caplog.at_level(logging.ERROR, logger="agent.sinks.mqtt.link"):
        link.start()
        try:
            wait_until(lambda: any("cannot connect" in m for m in _errors(caplog)), timeout=20)
            wait_until(lambda: link.stats().last_error.startswith("connect failed"), timeout=5)
        finally:
            link.stop(drain_timeout=0)
            broker.kill()
    messages = [m for m in _errors(caplog) if "cannot connect" in m]
    assert "CERTIFICATE_VERIFY_FAILED" in messages[0], messages
    assert len(messages) == 1, "repeated retries log the same reason once"


def test_refused_tcp_connection_is_logged(tmp_path, caplog) -> None:
    settings = MqttSettings(
        host="127.0.0.1", port=free_port(), device_id="d1",
        reconnect_min_delay=0.1, reconnect_max_delay=0.2,
    )  # fmt: skip
    link = _link(tmp_path, settings)
    with caplog.at_level(logging.ERROR, logger="agent.sinks.mqtt.link"):
        link.start()
        try:
            wait_until(lambda: any("refused" in m.lower() for m in _errors(caplog)), timeout=20)
        finally:
            link.stop(drain_timeout=0)
