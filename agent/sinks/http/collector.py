"""``/metrics``: a Prometheus collector over the published view (docs/metrics.md lists them).

:data:`CATALOGUE` is the one list of what is exported — name, type, labels and help — used
by the collector, the documentation test and the Grafana dashboard test. The collector reads
only the :class:`~agent.sinks.http.view.ViewBoard`'s frozen view, so a scrape never touches
the main loop's objects; counters come from the agent's own counters (frames and windows
since the process started; outbox totals persist across restarts, as in ``status``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from agent.sinks.http.health import readiness
from agent.sinks.http.recorder import LATENCY_BUCKETS_S
from agent.sinks.http.view import EndpointView, ViewBoard
from agent.sinks.mqtt.payloads import AgentIdentity, OtaState

Kind = Literal["counter", "gauge", "histogram", "info"]
OTA_STATES: tuple[str, ...] = get_args(OtaState)
ROBOT = ("robot",)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # as exposed: counters end in _total, info metrics in _info
    kind: Kind
    labels: tuple[str, ...]
    help: str

    @property
    def family_name(self) -> str:
        """The name prometheus_client's family classes take (they add the suffix)."""
        if self.kind == "counter":
            return self.name.removesuffix("_total")
        return self.name.removesuffix("_info") if self.kind == "info" else self.name

    def sample_names(self) -> tuple[str, ...]:
        if self.kind == "histogram":
            return tuple(self.name + s for s in ("_bucket", "_count", "_sum"))
        return (self.name,)


CATALOGUE: tuple[MetricSpec, ...] = (
    MetricSpec("rapp_agent_info", "info", ("device", "version", "boot_id"), "The agent process."),
    MetricSpec(
        "rapp_agent_start_time_seconds", "gauge", (), "Unix time the agent process started."
    ),
    MetricSpec("rapp_agent_ready", "gauge", (), "1 while /readyz reports ready, else 0."),
    MetricSpec(
        "rapp_agent_snapshot_age_seconds",
        "gauge",
        (),
        "Seconds since the main loop last published its snapshot (about 1 while it runs).",
    ),
    MetricSpec("rapp_mqtt_connected", "gauge", (), "1 while connected to the MQTT broker."),
    MetricSpec(
        "rapp_frames_received_total",
        "counter",
        ROBOT,
        "Frames delivered to the pipeline: decoded, CRC-valid, matching the channel map "
        "(MQTT JSON: accepted payloads; simulator and replay: samples).",
    ),
    MetricSpec("rapp_frames_crc_errors_total", "counter", ROBOT, "Frames rejected by their CRC."),
    MetricSpec(
        "rapp_frames_sequence_gaps_total",
        "counter",
        ROBOT,
        "Gap events: times data was lost before a delivered frame.",
    ),
    MetricSpec(
        "rapp_frames_resyncs_total",
        "counter",
        ROBOT,
        "Times bytes were discarded to get back in sync with the frame delimiters.",
    ),
    MetricSpec("rapp_source_connected", "gauge", ROBOT, "1 while the robot's source is open."),
    MetricSpec(
        "rapp_source_reconnects_total", "counter", ROBOT, "Reconnects of the robot's source."
    ),
    MetricSpec(
        "rapp_source_chunks_dropped_total",
        "counter",
        ROBOT,
        "Chunks dropped because the robot's bounded input queue was full.",
    ),
    MetricSpec("rapp_windows_scored_total", "counter", ROBOT, "Windows scored."),
    MetricSpec(
        "rapp_windows_skipped_total",
        "counter",
        ("robot", "reason"),
        "Windows not scored, by reason: gap, nan, cycle_length, unrouted.",
    ),
    MetricSpec(
        "rapp_windows_interpolated_total",
        "counter",
        ROBOT,
        "Windows scored after filling a short gap by interpolation.",
    ),
    MetricSpec(
        "rapp_windows_unknown_program_total",
        "counter",
        ROBOT,
        "Unrouted windows whose program id no bundle serves.",
    ),
    MetricSpec(
        "rapp_windows_membership_routed_total",
        "counter",
        ROBOT,
        "Windows without a program id, routed to a bundle by membership.",
    ),
    MetricSpec(
        "rapp_windows_non_finite_total", "counter", ROBOT, "Windows whose score was not finite."
    ),
    MetricSpec(
        "rapp_stream_gaps_total",
        "counter",
        ROBOT,
        "Gaps the segmenter saw in the sample stream (each starts a new run of windows).",
    ),
    MetricSpec("rapp_score", "gauge", ROBOT, "Novelty score of the robot's last scored window."),
    MetricSpec(
        "rapp_score_smoothed",
        "gauge",
        ROBOT,
        "Smoothed (EWMA) score the alarm decision compares with the threshold.",
    ),
    MetricSpec(
        "rapp_score_threshold", "gauge", ROBOT, "Alarm threshold of the last scored window."
    ),
    MetricSpec(
        "rapp_score_last_window_timestamp_seconds",
        "gauge",
        ROBOT,
        "Unix time the robot's last scored window ended.",
    ),
    MetricSpec(
        "rapp_window_latency_seconds",
        "histogram",
        ROBOT,
        "From the newest sample's reception to its window's score (queueing, segmenting and "
        "backend inference).",
    ),
    MetricSpec("rapp_alarm_active", "gauge", ROBOT, "1 while an alarm is active on the robot."),
    MetricSpec(
        "rapp_alarm_events_total",
        "counter",
        ("robot", "kind", "severity"),
        "Alarm events since the agent started, by kind (raise, clear) and severity.",
    ),
    MetricSpec(
        "rapp_drift_ks",
        "gauge",
        ROBOT,
        "Largest KS statistic of recent normal scores vs calibration.",
    ),
    MetricSpec("rapp_drift_p50_ratio", "gauge", ROBOT, "Recent median score / calibration median."),
    MetricSpec("rapp_drift_p90_ratio", "gauge", ROBOT, "Recent p90 score / calibration p90."),
    MetricSpec("rapp_drift_alarm_ratio", "gauge", ROBOT, "Share of recent windows in alarm."),
    MetricSpec(
        "rapp_drift_unknown_program_ratio",
        "gauge",
        ROBOT,
        "Share of recent windows with a program id no bundle serves.",
    ),
    MetricSpec(
        "rapp_drift_membership_confidence_ratio",
        "gauge",
        ROBOT,
        "Mean membership confidence of recent windows without a program id.",
    ),
    MetricSpec(
        "rapp_drift_recent_windows", "gauge", ROBOT, "Windows the drift indicators are over."
    ),
    MetricSpec(
        "rapp_retraining_advised",
        "gauge",
        ROBOT,
        "1 when the drift monitor advises retraining the robot's model.",
    ),
    MetricSpec(
        "rapp_bundle_info",
        "gauge",
        ("robot", "bundle_id", "version", "programs"),
        "Bundles being served (value 1), with the program ids each serves.",
    ),
    MetricSpec(
        "rapp_outbox_messages",
        "gauge",
        ("kind",),
        "Messages waiting in the outbox for the broker, by kind (alarm, event, telemetry).",
    ),
    MetricSpec(
        "rapp_outbox_oldest_message_age_seconds",
        "gauge",
        (),
        "Age of the oldest undelivered message (absent when the outbox is empty).",
    ),
    MetricSpec("rapp_outbox_enqueued_total", "counter", (), "Messages ever queued in the outbox."),
    MetricSpec("rapp_outbox_acked_total", "counter", (), "Messages the broker acknowledged."),
    MetricSpec(
        "rapp_outbox_telemetry_dropped_total",
        "counter",
        (),
        "Score telemetry dropped because the outbox's telemetry bound was reached.",
    ),
    MetricSpec(
        "rapp_outbox_held_messages",
        "gauge",
        (),
        "Alarms and events held in memory because the state disk refuses writes.",
    ),
    MetricSpec(
        "rapp_outbox_held_dropped_total",
        "counter",
        (),
        "Alarms and events dropped from memory while the state disk refused writes.",
    ),
    MetricSpec("rapp_outbox_disk_full", "gauge", (), "1 while the state disk refuses writes."),
    MetricSpec(
        "rapp_ota_state",
        "gauge",
        ("state",),
        "The last OTA step this process reported: 1 for its state, 0 for the others.",
    ),
    MetricSpec(
        "rapp_ota_refusals_total",
        "counter",
        ("kind",),
        "OTA commands and chunks ignored this run, by kind.",
    ),
)
SPECS: Mapping[str, MetricSpec] = {s.name: s for s in CATALOGUE}

FRAME_METRICS = {
    "ok": "rapp_frames_received_total",
    "crc_errors": "rapp_frames_crc_errors_total",
    "sequence_gaps": "rapp_frames_sequence_gaps_total",
    "resyncs": "rapp_frames_resyncs_total",
}
# status ``windows`` keys → (metric, extra label values)
WINDOW_METRICS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "scored": ("rapp_windows_scored_total", ()),
    "skipped_gap": ("rapp_windows_skipped_total", ("gap",)),
    "skipped_nan": ("rapp_windows_skipped_total", ("nan",)),
    "skipped_cycle_length": ("rapp_windows_skipped_total", ("cycle_length",)),
    "unrouted": ("rapp_windows_skipped_total", ("unrouted",)),
    "interpolated": ("rapp_windows_interpolated_total", ()),
    "unknown_program": ("rapp_windows_unknown_program_total", ()),
    "membership_routed": ("rapp_windows_membership_routed_total", ()),
    "non_finite": ("rapp_windows_non_finite_total", ()),
    "gaps": ("rapp_stream_gaps_total", ()),
    "queue_dropped": ("rapp_source_chunks_dropped_total", ()),
    "source_connected": ("rapp_source_connected", ()),
    "reconnects": ("rapp_source_reconnects_total", ()),
}
DRIFT_METRICS = {
    "ks": "rapp_drift_ks",
    "p50_ratio": "rapp_drift_p50_ratio",
    "p90_ratio": "rapp_drift_p90_ratio",
    "alarm_rate": "rapp_drift_alarm_ratio",
    "unknown_program_share": "rapp_drift_unknown_program_ratio",
    "membership_confidence": "rapp_drift_membership_confidence_ratio",
    "recent_windows": "rapp_drift_recent_windows",
}
LATENCY_BOUNDS = [floatToGoString(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
EVENT_KINDS = ("raise", "clear")
SEVERITIES = ("warning", "critical")


class _Families:
    """The families of one scrape, created from :data:`CATALOGUE` on first use."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def family(self, name: str) -> Metric:
        if name not in self._families:
            spec = SPECS[name]
            cls = {
                "counter": CounterMetricFamily,
                "gauge": GaugeMetricFamily,
                "histogram": HistogramMetricFamily,
                "info": InfoMetricFamily,
            }[spec.kind]
            self._families[name] = cls(spec.family_name, spec.help, labels=spec.labels)
        return self._families[name]

    def add(self, name: str, labels: tuple[str, ...], value: float | None) -> None:
        if value is None:
            return
        self.family(name).add_metric(list(labels), float(value))

    def all(self) -> Iterator[Metric]:
        for spec in CATALOGUE:
            if spec.name in self._families:
                yield self._families[spec.name]


class AgentCollector(Collector):
    """Yields the catalogue's metrics from the board's latest view, per robot."""

    def __init__(self, board: ViewBoard, identity: AgentIdentity, stall_after_s: float) -> None:
        self._board = board
        self._identity = identity
        self._stall_after_s = stall_after_s

    def describe(self) -> Iterator[Metric]:
        return iter(())  # registering must not run a scrape

    def collect(self) -> Iterator[Metric]:
        out = _Families()
        ident = self._identity
        out.family("rapp_agent_info").add_metric(
            [], {"device": ident.device, "version": ident.agent_version, "boot_id": ident.boot_id}
        )
        out.add("rapp_agent_start_time_seconds", (), ident.started)
        ready = readiness(self._board, self._stall_after_s).ok
        out.add("rapp_agent_ready", (), int(ready))
        out.add("rapp_agent_snapshot_age_seconds", (), self._board.age())
        view = self._board.view
        if view is not None:
            _robots(out, view, self._board.robots)
            _bundles(out, view)
            _outbox(out, view)
            _ota(out, view)
            if view.facts.broker_connected is not None:
                out.add("rapp_mqtt_connected", (), int(view.facts.broker_connected))
        return out.all()


def _robots(out: _Families, view: EndpointView, robots: tuple[str, ...]) -> None:
    status, recorded = view.facts.status, view.recorded
    for robot in robots:
        health = status.robots.get(robot)
        if health is not None:
            for key, metric in FRAME_METRICS.items():
                out.add(metric, (robot,), getattr(health.frames, key))
            for key, value in health.windows.items():
                if key in WINDOW_METRICS:
                    metric, extra = WINDOW_METRICS[key]
                    out.add(metric, (robot, *extra), value)
            for key, value in (health.drift or {}).items():
                if key in DRIFT_METRICS:
                    out.add(DRIFT_METRICS[key], (robot,), value)
            out.add("rapp_retraining_advised", (robot,), int(health.retraining_advised))
        active = view.facts.alarms.get(robot)
        out.add("rapp_alarm_active", (robot,), int(active is not None))
        for kind in EVENT_KINDS:
            for severity in SEVERITIES:
                n = recorded.event_counts.get((robot, kind, severity), 0)
                out.add("rapp_alarm_events_total", (robot, kind, severity), n)
        _scores(out, view, robot)


def _scores(out: _Families, view: EndpointView, robot: str) -> None:
    last = view.recorded.last.get(robot)
    if last is not None:
        out.add("rapp_score", (robot,), last.score)
        out.add("rapp_score_smoothed", (robot,), last.smoothed)
        out.add("rapp_score_threshold", (robot,), last.threshold)
        out.add("rapp_score_last_window_timestamp_seconds", (robot,), last.end)
    latency = view.recorded.latency.get(robot)
    if latency is not None:
        family = out.family("rapp_window_latency_seconds")
        counts = [*latency.cumulative, latency.count]
        buckets = list(zip(LATENCY_BOUNDS, counts, strict=True))
        family.add_metric([robot], buckets=buckets, sum_value=latency.total)


def _bundles(out: _Families, view: EndpointView) -> None:
    for b in view.facts.status.bundles:
        out.add("rapp_bundle_info", (b.robot, b.bundle_id, b.version, ",".join(b.programs)), 1)


def _outbox(out: _Families, view: EndpointView) -> None:
    stats = view.facts.outbox
    if stats is None:
        return
    for kind in ("alarm", "event", "telemetry"):
        out.add("rapp_outbox_messages", (kind,), getattr(stats, kind))
    if stats.oldest_created is not None:
        age = max(0.0, view.published_wall - stats.oldest_created)
        out.add("rapp_outbox_oldest_message_age_seconds", (), age)
    out.add("rapp_outbox_enqueued_total", (), stats.enqueued_total)
    out.add("rapp_outbox_acked_total", (), stats.acked_total)
    out.add("rapp_outbox_telemetry_dropped_total", (), stats.telemetry_dropped)
    out.add("rapp_outbox_held_messages", (), stats.held)
    out.add("rapp_outbox_held_dropped_total", (), stats.held_dropped)
    out.add("rapp_outbox_disk_full", (), int(stats.storage is not None))


def _ota(out: _Families, view: EndpointView) -> None:
    current = (view.facts.ota or {}).get("state")
    for state in OTA_STATES:
        out.add("rapp_ota_state", (state,), int(state == current))
    for kind, n in sorted(view.facts.ota_refusals.items()):
        out.add("rapp_ota_refusals_total", (kind,), n)
