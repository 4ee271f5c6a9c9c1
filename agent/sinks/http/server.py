"""The HTTP endpoint's lifecycle: a ``ThreadingHTTPServer`` in a daemon thread.

The daemon wires it like the other sinks (docs/architecture.md)::

    endpoint = HttpEndpoint.open(config.http, identity, robot_ids)  # binds, serves
    endpoint.watch(publisher)          # scored windows and alarm events, on the main loop
    if endpoint.due(): endpoint.publish(facts)   # main loop, about once a second
    endpoint.mark_stopping(); ...; endpoint.close()

Request threads only read the :class:`~agent.sinks.http.view.ViewBoard`. Every response
carries ``X-Rapp-Device`` so the preflight can tell this agent's own endpoint from another
program holding the port (agent/sinks/http/probe.py).
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry

from agent.sinks.http.app import HttpApp, Response, StatusPage
from agent.sinks.http.collector import AgentCollector
from agent.sinks.http.recorder import WindowRecorder
from agent.sinks.http.settings import HttpSettings, HttpSettingsError
from agent.sinks.http.view import AgentFacts, ViewBoard
from agent.sinks.mqtt.payloads import AgentIdentity
from agent.sinks.publisher import ResultPublisher

log = logging.getLogger(__name__)
PUBLISH_INTERVAL_S = 1.0
REQUEST_TIMEOUT_S = 10.0  # a client that stops sending does not hold a thread for long
DEVICE_HEADER = "X-Rapp-Device"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_S
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_POST(self) -> None:
        self._answer(send_body=True)

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _answer(self, send_body: bool) -> None:
        try:
            response = self.server.app.respond(
                self.command, self.path, self.headers.get("Accept", "")
            )
        except Exception:
            log.exception("http: %s %s failed", self.command, self.path)
            response = Response(500, "application/json", b'{"error":"internal error"}')
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header(DEVICE_HEADER, self.server.app.identity.device)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(response.body)

    def version_string(self) -> str:
        return f"rapp-agent/{self.server.app.identity.agent_version}"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http: %s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple, app: HttpApp) -> None:
        self.app = app
        super().__init__(address, _Handler)


class _Server6(_Server):
    address_family = socket.AF_INET6


def bind_server(settings: HttpSettings, app: HttpApp) -> _Server:
    """A server bound to ``settings``' address; HttpSettingsError naming the fix if it cannot."""
    try:
        infos = socket.getaddrinfo(
            settings.host or None, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as err:
        raise listen_error(settings, f"cannot resolve the host ({err.strerror})") from err
    family, _, _, _, address = infos[0]
    cls = _Server6 if family == socket.AF_INET6 else _Server
    try:
        return cls(address, app)
    except OSError as err:
        raise listen_error(settings, bind_problem(err)) from err


def bind_problem(err: OSError) -> str:
    if err.errno == errno.EADDRINUSE:
        return "the port is in use by another program; choose another port or stop it"
    if err.errno == errno.EACCES:
        return "permission denied; use a port >= 1024 (or grant CAP_NET_BIND_SERVICE)"
    if err.errno == errno.EADDRNOTAVAIL:
        return "not an address of this machine; use 127.0.0.1, an interface's address or 0.0.0.0"
    return f"cannot listen ({err.strerror or err})"


def listen_error(settings: HttpSettings, problem: str) -> HttpSettingsError:
    return HttpSettingsError(f"http.listen = {settings.listen!r}: {problem}")


class HttpEndpoint:
    """Serves the agent's metrics, health and status page from the main loop's snapshots."""

    def __init__(
        self, settings: HttpSettings, board: ViewBoard, server: _Server, recorder: WindowRecorder
    ) -> None:
        self.settings = settings
        self.board = board
        self.recorder = recorder
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="rapp-http", kwargs={"poll_interval": 0.2}
        )
        self._thread.daemon = True
        self._next_publish = 0.0

    @classmethod
    def open(
        cls, settings: HttpSettings, identity: AgentIdentity, robots: tuple[str, ...]
    ) -> HttpEndpoint:
        """Bind the address and start serving (``/readyz`` says "starting" until the first
        :meth:`publish`)."""
        board = ViewBoard(robots)
        registry = CollectorRegistry()
        registry.register(AgentCollector(board, identity, settings.stall_after_s))
        app = HttpApp(board, registry, identity, StatusPage.load(), settings.stall_after_s)
        endpoint = cls(settings, board, bind_server(settings, app), WindowRecorder())
        endpoint._thread.start()
        log.info("http: serving /metrics, /healthz, /readyz and / on %s", endpoint.address)
        return endpoint

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"

    def watch(self, publisher: ResultPublisher) -> None:
        publisher.window_observers.append(self.recorder.window)
        publisher.event_observers.append(self.recorder.event)

    def due(self) -> bool:
        """True about once a second: time for the main loop to :meth:`publish`."""
        now = time.monotonic()
        if now < self._next_publish:
            return False
        self._next_publish = now + PUBLISH_INTERVAL_S
        return True

    def publish(self, facts: AgentFacts) -> None:
        """Main loop: swap in a new view (the facts and the recorder's frozen aggregates)."""
        self.board.publish(facts, self.recorder.freeze())

    def mark_stopping(self) -> None:
        self.board.mark_stopping()

    def close(self) -> None:
        self.board.mark_stopping()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
