"""Preflight of ``[http]``: can the agent listen where the config says?

Binds the address once and lets it go. A port held by *this agent's own* endpoint is fine:
on a reload (SIGHUP) the running agent still serves while the new config is checked, and
``run --check`` may be run next to the service. Such a port answers ``/healthz`` with the
``X-Rapp-Device`` header naming the same device id; anything else holding it is a problem.
"""

from __future__ import annotations

import errno
import http.client
import socket

from agent.sinks.http.server import DEVICE_HEADER, bind_problem, listen_error
from agent.sinks.http.settings import HttpSettings

PROBE_TIMEOUT_S = 1.0
WILDCARD_PEERS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # where to ask


def check_listen(settings: HttpSettings, device_id: str) -> None:
    """Raise :class:`~agent.sinks.http.settings.HttpSettingsError` if the address cannot be
    listened on (unresolvable, not local, privileged, or in use by another program)."""
    try:
        infos = socket.getaddrinfo(
            settings.host or None, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as err:
        raise listen_error(settings, f"cannot resolve the host ({err.strerror})") from err
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE and served_by(settings, device_id):
                return
            raise listen_error(settings, bind_problem(err)) from err


def served_by(settings: HttpSettings, device_id: str) -> bool:
    """True if the address answers as the rapp-agent endpoint of ``device_id``."""
    host = WILDCARD_PEERS.get(settings.host, settings.host)
    conn = http.client.HTTPConnection(host, settings.port, timeout=PROBE_TIMEOUT_S)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        return response.getheader(DEVICE_HEADER) == device_id
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
