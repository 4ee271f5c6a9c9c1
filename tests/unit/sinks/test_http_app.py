"""The endpoint's routes, answered from a board (no sockets): health, readiness, metrics,
status.json and the status page."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from agent.sinks.http import view as view_module
from agent.sinks.http.app import HttpApp, StatusPage
from agent.sinks.http.collector import AgentCollector
from agent.sinks.http.recorder import Recorded
from agent.sinks.http.view import AgentFacts, ViewBoard, outbox_stats
from agent.sinks.mqtt.payloads import RobotHealth
from agent.sinks.outbox import OutboxError
from agent.sinks.status import StatusSnapshot
from tests.unit.sinks.test_http_collector import IDENTITY, STALL_S, full_board, full_facts

PAGE = StatusPage.load()


def app_for(board: ViewBoard) -> HttpApp:
    registry = CollectorRegistry()
    registry.register(AgentCollector(board, IDENTITY, STALL_S))
    return HttpApp(board, registry, IDENTITY, PAGE, STALL_S)


def get_json(app: HttpApp, path: str) -> tuple[int, dict]:
    response = app.respond("GET", path)
    assert response.content_type == "application/json"
    return response.status, json.loads(response.body)


def test_readyz_before_the_first_snapshot_says_starting():
    status, body = get_json(app_for(ViewBoard(("arm1",))), "/readyz")
    assert status == 503
    assert body["ready"] is False
    assert body["not_ready"] == ["agent: starting (loading bundles, opening sources)"]


def test_readyz_ready_once_bundles_sources_and_broker_are_up():
    status, body = get_json(app_for(full_board()), "/readyz")
    assert (status, body["ready"], body["not_ready"]) == (200, True, [])
    assert body["checks"] == {"main_loop": True, "bundles": True, "sources": True, "mqtt": True}


def _board_with(facts: AgentFacts, robots: tuple[str, ...] = ("arm1", "arm2")) -> ViewBoard:
    board = ViewBoard(robots)
    board.publish(facts, Recorded())
    return board


def test_readyz_names_each_thing_that_is_not_ready():
    facts = full_facts(None)
    robots = dict(facts.status.robots) | {"arm2": RobotHealth(windows={"source_connected": 0})}
    status = StatusSnapshot(bundles=facts.status.bundles[:1], robots=robots)
    board = _board_with(AgentFacts(status, broker_connected=False))
    code, body = get_json(app_for(board), "/readyz")
    assert code == 503
    assert body["not_ready"] == [
        "bundles: none loaded for robot arm2",
        "sources: the source of robot arm2 is not open",
        "mqtt: broker not connected",
    ]
    assert body["checks"] == {"main_loop": True, "bundles": False, "sources": False, "mqtt": False}


def test_without_mqtt_the_broker_is_not_a_readiness_condition():
    facts = full_facts(None)
    board = _board_with(AgentFacts(facts.status, broker_connected=None))
    code, body = get_json(app_for(board), "/readyz")
    assert code == 200 and body["checks"]["mqtt"] is None


def test_a_stopping_agent_is_alive_but_not_ready():
    board = full_board()
    board.mark_stopping()
    app = app_for(board)
    assert get_json(app, "/readyz") == (
        503,
        {"ready": False, "checks": dict.fromkeys(("main_loop", "bundles", "sources", "mqtt")),
         "not_ready": ["agent: stopping"]},
    )  # fmt: skip
    assert get_json(app, "/healthz")[0] == 200


def test_healthz_fails_once_the_main_loop_stops_publishing(monkeypatch):
    board = full_board()
    app = app_for(board)
    status, body = get_json(app, "/healthz")
    assert status == 200 and body["status"] == "ok" and body["snapshot_age_s"] < 5
    later = view_module.time.monotonic() + STALL_S + 1
    monkeypatch.setattr(view_module.time, "monotonic", lambda: later)
    status, body = get_json(app, "/healthz")
    assert status == 503 and body["status"] == "stalled" and body["snapshot_age_s"] > STALL_S
    code, ready = get_json(app, "/readyz")
    assert code == 503 and ready["not_ready"][0].startswith("main loop: no progress for")


def test_healthz_counts_from_the_endpoint_opening_while_bundles_load():
    status, body = get_json(app_for(ViewBoard(("arm1",))), "/healthz")
    assert status == 200 and body["snapshot_age_s"] < 5


def test_metrics_is_prometheus_text_and_openmetrics_on_request():
    app = app_for(full_board())
    response = app.respond("GET", "/metrics")
    assert response.status == 200 and response.content_type.startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(response.body.decode())}
    assert "rapp_score" in names and "rapp_frames_received" in names
    om = app.respond("GET", "/metrics", "application/openmetrics-text; version=1.0.0")
    assert om.content_type.startswith("application/openmetrics-text")
    assert om.body.rstrip().endswith(b"# EOF")


def test_status_json_carries_robots_alarms_events_and_bundles():
    status, doc = get_json(app_for(full_board()), "/status.json")
    assert status == 200
    assert doc["device"] == "ipc1" and doc["ready"] is True
    arm1, arm2 = doc["robots"]
    assert arm1["id"] == "arm1" and arm1["score"] == 2.5 and arm1["threshold"] == 1.0
    assert arm1["alarm"]["severity"] == "critical"
    assert arm1["alarm"]["top_channel"] == "J2<script>", "escaped by the page, not here"
    assert arm2 == {**arm2, "id": "arm2", "alarm": None} and "score" not in arm2
    assert [e["kind"] for e in doc["events"]] == ["raise"]
    assert {b["bundle_id"] for b in doc["bundles"]} == {"b1", "b2"}
    assert doc["outbox"]["disk_full"] is True and doc["mqtt_connected"] is True
    assert doc["ota"]["state"] == "staged"


def test_status_json_before_the_first_snapshot_lists_the_configured_robots():
    status, doc = get_json(app_for(ViewBoard(("arm1",))), "/status.json")
    assert status == 200 and doc["robots"] == [{"id": "arm1"}] and doc["ready"] is False


def test_unknown_pages_and_writes_are_refused():
    app = app_for(full_board())
    status, body = get_json(app, "/nope?x=1")
    assert status == 404 and "/metrics" in body["pages"]
    response = app.respond("POST", "/metrics")
    assert response.status == 405 and response.headers["Allow"] == "GET, HEAD"
    assert app.respond("GET", "/healthz?verbose=1").status == 200, "queries are ignored"


def test_the_page_is_self_contained_and_only_its_own_inline_code_may_run():
    response = app_for(full_board()).respond("GET", "/")
    assert response.status == 200 and response.content_type == "text/html; charset=utf-8"
    html = response.body.decode()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "external asset"
    assert "@import" not in html and "url(" not in html
    script = re.search(r"<script>(.*?)</script>", html, re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = response.headers["Content-Security-Policy"]
    assert f"script-src 'sha256-{digest}'" in csp
    assert "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert "connect-src 'self'" in csp
    assert 'fetch("/status.json"' in script


@pytest.mark.parametrize("sink", ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"])
def test_the_page_inserts_agent_data_as_text_only(sink):
    assert sink not in PAGE.html.decode()


def test_a_failed_outbox_read_leaves_the_stats_out_instead_of_stopping_the_loop():
    class BrokenOutbox:
        def stats(self):
            raise OutboxError("outbox /x: read failed: disk I/O error")

    assert outbox_stats(BrokenOutbox()) is None  # type: ignore[arg-type]
    assert outbox_stats(None) is None
