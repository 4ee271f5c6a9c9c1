"""The endpoint's routes as a plain function of (method, path, Accept): no sockets here.

``GET /metrics`` (Prometheus text, or OpenMetrics when asked for), ``/healthz``, ``/readyz``,
``/status.json`` and ``/`` (the status page, from package data). Read-only: anything but GET
and HEAD is refused. Every response says ``Cache-Control: no-store``; the page gets a
Content-Security-Policy that allows only its own inline script and style (by hash) and
requests to this origin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from importlib import resources

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from agent.sinks.http.health import liveness, readiness
from agent.sinks.http.status_json import status_document
from agent.sinks.http.view import ViewBoard
from agent.sinks.mqtt.payloads import AgentIdentity

JSON = "application/json"
HTML = "text/html; charset=utf-8"
PAGE_FILE = "page.html"
ROUTES = ("/", "/metrics", "/healthz", "/readyz", "/status.json")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatusPage:
    """The page's HTML and the Content-Security-Policy that lets exactly it run."""

    html: bytes
    csp: str

    @classmethod
    def load(cls) -> StatusPage:
        text = resources.files(__package__).joinpath(PAGE_FILE).read_text("utf-8")
        sources = {
            kind: " ".join(f"'sha256-{_digest(body)}'" for body in _inline(text, kind))
            for kind in ("script", "style")
        }
        csp = (
            f"default-src 'none'; script-src {sources['script']}; "
            f"style-src {sources['style']}; connect-src 'self'; img-src 'self' data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        return cls(text.encode(), csp)


def _inline(html: str, tag: str) -> list[str]:
    return re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)


def _digest(body: str) -> str:
    return base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()


def _json(status: int, doc: object) -> Response:
    body = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    return Response(status, JSON, body)


class HttpApp:
    """Answers requests from the board's latest view and the per-agent metrics registry."""

    def __init__(
        self,
        board: ViewBoard,
        registry: CollectorRegistry,
        identity: AgentIdentity,
        page: StatusPage,
        stall_after_s: float,
    ) -> None:
        self.board = board
        self.registry = registry
        self.identity = identity
        self.page = page
        self.stall_after_s = stall_after_s

    def respond(self, method: str, target: str, accept: str = "") -> Response:
        path = urllib.parse.urlsplit(target).path
        if method not in ("GET", "HEAD"):
            response = _json(405, {"error": f"{method} not allowed; this endpoint is read-only"})
            response.headers["Allow"] = "GET, HEAD"
            return response
        if path in ("/", "/index.html"):
            return Response(200, HTML, self.page.html, {"Content-Security-Policy": self.page.csp})
        if path == "/metrics":
            encoder, content_type = choose_encoder(accept)
            return Response(200, content_type, encoder(self.registry))
        if path == "/healthz":
            verdict = liveness(self.board, self.stall_after_s)
            return _json(200 if verdict.ok else 503, verdict.body)
        if path == "/readyz":
            verdict = readiness(self.board, self.stall_after_s)
            return _json(200 if verdict.ok else 503, verdict.body)
        if path == "/status.json":
            return _json(200, status_document(self.board, self.identity, self.stall_after_s))
        return _json(404, {"error": f"no such page {path!r}", "pages": list(ROUTES)})
