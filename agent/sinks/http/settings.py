"""``[http]``: where the read-only HTTP endpoint listens (no table: no endpoint).

Parsing is pure; whether the address can be bound is checked by
:func:`agent.sinks.http.probe.check_listen` (preflight).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from agent.core.errors import ConfigError
from agent.core.tables import Table, in_range

DEFAULT_LISTEN = "127.0.0.1:9108"
LISTEN_FIX = (
    'e.g. listen = "127.0.0.1:9108" (HOST:PORT; "[::1]:9108" for IPv6, "0.0.0.0:9108" for '
    "every interface)"
)


class HttpSettingsError(ConfigError):
    """An invalid ``[http]`` table; the message names the key, the value and the fix."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """host/port: the listening address (host "" = every interface).
    stall_after_s: ``/healthz`` fails once the main loop has not published a snapshot for this
    long (it publishes about once a second while it runs)."""

    host: str = "127.0.0.1"
    port: int = 9108
    stall_after_s: float = 60.0

    @property
    def listen(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def from_table(cls, t: Table) -> HttpSettings:
        try:
            host, port = parse_listen(t.get("listen", str, DEFAULT_LISTEN, fix=LISTEN_FIX))
        except ValueError as err:
            raise HttpSettingsError(f"{t.key('listen')} = {t.data['listen']!r}: {err}") from err
        settings = cls(
            host=host,
            port=port,
            stall_after_s=t.get("stall_after_s", float, 60.0, check=in_range(1.0, 3600.0)),
        )
        t.done()
        return settings


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[V6]:PORT``) as (host, port); raises ValueError naming the fix."""
    try:
        parts = urllib.parse.urlsplit(f"//{value.strip()}")
        port = parts.port
    except ValueError as err:
        raise ValueError(f"not HOST:PORT ({err}); {LISTEN_FIX}") from err
    extra = parts.path or parts.query or parts.fragment or parts.username or parts.password
    if port is None or extra or "://" in value:
        raise ValueError(f"not HOST:PORT; {LISTEN_FIX}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} must be 1..65535; {LISTEN_FIX}")
    return parts.hostname or "", port
