"""The Grafana dashboard in dashboards/ queries only metrics the agent exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.unit.sinks.test_http_collector import full_board, scrape

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "dashboards" / "grafana-rapp-agent.json"
METRIC = re.compile(r"\brapp_[a-z0-9_]+")


def _queries(node: Any) -> Iterator[str]:
    """Every PromQL text in the dashboard: panel targets and variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, str | dict):
                yield value if isinstance(value, str) else str(value.get("query", ""))
            else:
                yield from _queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _queries(item)


def test_every_expression_names_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exported = set(scrape(full_board()))
    queries = list(_queries(dashboard))
    assert queries, "the dashboard has no queries"
    used = {name for q in queries for name in METRIC.findall(q)}
    assert used, "no rapp_ metric in the dashboard"
    assert used <= exported, f"not exported by the collector: {sorted(used - exported)}"


def test_the_dashboard_covers_what_an_operator_watches():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used = {name for q in _queries(dashboard) for name in METRIC.findall(q)}
    for name in (
        "rapp_score_smoothed",
        "rapp_score_threshold",
        "rapp_alarm_active",
        "rapp_frames_received_total",
        "rapp_frames_sequence_gaps_total",
        "rapp_outbox_messages",
        "rapp_window_latency_seconds_bucket",
    ):
        assert name in used, name


def test_the_dashboard_imports_with_a_chosen_prometheus_datasource():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"] and {"x", "y", "w", "h"} <= set(panel["gridPos"])
