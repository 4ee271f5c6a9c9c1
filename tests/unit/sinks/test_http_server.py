"""The endpoint over a real loopback socket: serving, shutdown, and the preflight probe."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from agent.pipeline.robot import PipelineResult
from agent.sinks.http.probe import check_listen
from agent.sinks.http.server import HttpEndpoint
from agent.sinks.http.settings import HttpSettings, HttpSettingsError
from agent.sinks.http.view import AgentFacts
from agent.sinks.publisher import ResultPublisher
from agent.sinks.status import StatusSnapshot
from agent.sinks.topics import Topics
from tests.support.broker import free_port
from tests.unit.sinks.test_http_collector import IDENTITY, alarm_event, scored_window


def _settings(port: int | None = None) -> HttpSettings:
    return HttpSettings(host="127.0.0.1", port=port or free_port())


@pytest.fixture
def endpoint() -> Iterator[HttpEndpoint]:
    ep = HttpEndpoint.open(_settings(), IDENTITY, ("arm1",))
    try:
        yield ep
    finally:
        ep.close()


def _get(ep: HttpEndpoint, path: str, method: str = "GET"):
    request = urllib.request.Request(f"http://{ep.address}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_serves_every_route_with_the_agent_headers(endpoint):
    for path, status in (("/", 200), ("/metrics", 200), ("/healthz", 200), ("/readyz", 503),
                         ("/status.json", 200), ("/nope", 404)):  # fmt: skip
        code, headers, body = _get(endpoint, path)
        assert code == status, path
        assert headers["X-Rapp-Device"] == "ipc1"
        assert headers["Cache-Control"] == "no-store"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Server"].startswith("rapp-agent/0.1.0")
        assert int(headers["Content-Length"]) == len(body)
    assert "Content-Security-Policy" in _get(endpoint, "/")[1]


def test_head_has_no_body_and_writes_are_refused(endpoint):
    code, headers, body = _get(endpoint, "/healthz", method="HEAD")
    assert code == 200 and body == b"" and int(headers["Content-Length"]) > 0
    code, headers, _ = _get(endpoint, "/metrics", method="POST")
    assert code == 405 and headers["Allow"] == "GET, HEAD"


def test_scored_windows_reach_the_page_after_the_main_loop_publishes(endpoint):
    publisher = ResultPublisher(IDENTITY, Topics.for_device("ipc1"), None, ("arm1",), 1.0)
    endpoint.watch(publisher)
    event = alarm_event("arm1")
    publisher.publish(PipelineResult([scored_window("arm1", 3.0, 1.0, 0.01)], [event]), {}.get)
    assert json.loads(_get(endpoint, "/status.json")[2])["events"] == [], "not published yet"
    assert endpoint.due() and not endpoint.due(), "about once a second"
    endpoint.publish(AgentFacts(StatusSnapshot(), alarms={"arm1": event}))
    doc = json.loads(_get(endpoint, "/status.json")[2])
    assert doc["robots"][0]["score"] == 3.0 and doc["robots"][0]["alarm"]["raise_id"] == "01RAISE"
    assert [e["id"] for e in doc["events"]] == ["01RAISE"]


def test_close_stops_serving_and_frees_the_port():
    settings = _settings()
    ep = HttpEndpoint.open(settings, IDENTITY, ("arm1",))
    assert _get(ep, "/healthz")[0] == 200
    ep.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{ep.address}/healthz", timeout=2)
    again = HttpEndpoint.open(settings, IDENTITY, ("arm1",))  # a reload binds the same port
    again.close()


def test_a_port_in_use_is_a_config_error_at_open_and_in_preflight():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        settings = _settings(other.getsockname()[1])
        with pytest.raises(HttpSettingsError, match="in use by another program"):
            HttpEndpoint.open(settings, IDENTITY, ("arm1",))
        with pytest.raises(HttpSettingsError, match=r"^http\.listen = '127\.0\.0\.1:\d+': the"):
            check_listen(settings, "ipc1")


def test_preflight_accepts_a_free_port_and_this_agents_own_endpoint(endpoint):
    check_listen(_settings(), "ipc1")
    check_listen(endpoint.settings, "ipc1")  # a reload: the running agent still serves
    with pytest.raises(HttpSettingsError, match="in use"):
        check_listen(endpoint.settings, "another-device")


def test_preflight_refuses_an_address_of_another_machine():
    # bind() only: nothing is sent anywhere
    settings = HttpSettings(host="192.0.2.1", port=9108)  # TEST-NET-1, never local
    with pytest.raises(HttpSettingsError, match="not an address of this machine"):
        check_listen(settings, "ipc1")
