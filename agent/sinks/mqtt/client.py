"""Builds the paho client the MQTT link drives: protocol, session, limits, credentials, TLS.

Reads the password (file or systemd credential) and loads the TLS files, so it runs when the
link starts, not when settings are parsed.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Mapping

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.sinks.mqtt.errors import CredentialError
from agent.sinks.mqtt.settings import MqttSettings, TlsSettings, resolve_password

log = logging.getLogger(__name__)

# Publishes paho may hold besides the outbox rows of the drain: the retained status ("online"
# at every connect, the periodic re-publish, "stopped" at the end).
STATUS_SLOTS = 4


class ReportingClient(mqtt.Client):
    """paho's client, remembering why the last (re)connect failed.

    paho's network thread swallows the OSError of a failed connect (TLS: unknown CA, hostname
    mismatch; refused; unreachable) and calls ``on_connect_fail`` without it, so an operator
    would never learn why the agent does not connect. ``last_connect_error`` keeps it.
    """

    last_connect_error: str = ""

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            code = super().reconnect()
        except OSError as err:
            self.last_connect_error = f"{type(err).__name__}: {err}"
            raise
        _send_without_delay(self.socket())
        return code


def _send_without_delay(sock: object) -> None:
    """An alarm leaves at once: without TCP_NODELAY a publish that follows another one waits
    for the broker's (delayed, up to 40 ms) acknowledgement when little else is in flight."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        log.debug("mqtt: cannot set TCP_NODELAY", exc_info=True)


def paho_window(settings: MqttSettings) -> int:
    """How many QoS > 0 messages paho may hold at once: the drain's rows plus status."""
    return settings.max_inflight + STATUS_SLOTS


def build_client(settings: MqttSettings, environ: Mapping[str, str] | None = None) -> mqtt.Client:
    """A configured, unconnected client (callbacks are set by the link).

    Raises :class:`CredentialError` for an unreadable password or unusable TLS files.
    """
    s = settings
    v5 = s.protocol == "5"
    client = ReportingClient(
        CallbackAPIVersion.VERSION2,
        client_id=s.effective_client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        # MQTT 5 takes clean_start at connect instead. A clean session is right: the agent
        # only publishes, and undelivered messages live in the outbox, not in the broker.
        clean_session=None if v5 else True,
        reconnect_on_failure=True,
    )
    # paho must never queue on its own: the outbox is the queue. Its store of QoS > 0
    # messages (sent and awaiting PUBACK, or held for a reconnect) is capped at its in-flight
    # window, which the drain never fills with rows (it keeps at most max_inflight in paho).
    # A publish beyond the cap returns MQTT_ERR_QUEUE_SIZE and the row simply stays in the
    # outbox until the next drain pass. (0 would mean *unlimited* in paho.)
    window = paho_window(s)
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(window)
    # paho annotates int but computes with any number; sub-second delays keep tests fast
    client.reconnect_delay_set(s.reconnect_min_delay, s.reconnect_max_delay)  # type: ignore[arg-type]
    if s.username is not None:
        client.username_pw_set(s.username, resolve_password(s, environ))
    if s.tls is not None:
        _set_tls(client, s.tls)
    elif s.has_password:
        log.warning("mqtt: password authentication without TLS sends the password in clear")
    return client


def _set_tls(client: mqtt.Client, tls: TlsSettings) -> None:
    try:
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    except (OSError, ssl.SSLError, ValueError) as err:
        raise CredentialError(
            f"mqtt.tls: cannot load CA/certificate/key ({tls}): {err}; "
            "fix: check the paths and that the files are PEM and readable"
        ) from err
    client.tls_insecure_set(tls.insecure)
