"""The edge node's session logic with a recording stand-in for the paho client: births before
data, sequence numbers, bdSeq in wills and births (kept across restarts), rebirth, death."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.pipeline.alarms import AlarmSettings, AlarmTracker, ModelRef, WindowInfo
from agent.pipeline.robot import ScoredWindow
from agent.sinks.mqtt.payloads import FrameCounters, RobotHealth
from agent.sinks.mqtt.settings import MqttSettings
from agent.sinks.sparkplug.codec import SparkplugCodec
from agent.sinks.sparkplug.edge import WILL_DISCONNECT, SparkplugEdge, edge_connection
from agent.sinks.sparkplug.metrics import DataType, Metric, SparkplugPayload
from agent.sinks.sparkplug.sequence import FILE_NAME
from agent.sinks.sparkplug.settings import SparkplugSettings

CODEC = SparkplugCodec.load()
MODEL = ModelRef("kr16-p12", "2024.05.1")
SETTINGS = SparkplugSettings(enabled=True, group_id="hall3", edge_node_id="cell7")
NODE = "spBv1.0/hall3/{}/cell7"
SUCCESS = ReasonCode(PacketTypes.CONNACK, "Success")


@dataclass
class Info:
    rc: int = 0

    def wait_for_publish(self, timeout: float | None = None) -> None:
        pass


@dataclass
class Sent:
    topic: str
    payload: SparkplugPayload
    qos: int
    retain: bool


@dataclass
class FakeClient:
    """Records what the edge node asks paho to do."""

    sent: list[Sent] = field(default_factory=list)
    wills: list[tuple[str, SparkplugPayload, int, bool]] = field(default_factory=list)
    subscribed: list[str] = field(default_factory=list)
    disconnected: list[Any] = field(default_factory=list)
    connect_args: dict = field(default_factory=dict)

    def will_set(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.wills.append((topic, CODEC.decode(payload), qos, retain))

    def connect_async(self, host: str, port: int, **kwargs: Any) -> None:
        self.connect_args = {"host": host, "port": port, **kwargs}

    def loop_start(self) -> None:
        pass

    def loop_stop(self) -> None:
        pass

    def subscribe(self, topic: str, qos: int) -> None:
        self.subscribed.append(topic)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Info:
        self.sent.append(Sent(topic, CODEC.decode(payload), qos, retain))
        return Info()

    def disconnect(self, reasoncode: Any = None) -> None:
        self.disconnected.append(reasoncode)

    def kinds(self) -> list[str]:
        return [s.topic.split("/")[2] for s in self.sent]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_edge(
    tmp_path: Path, clock: Clock, protocol: str = "5", interval: float = 1.0
) -> tuple[SparkplugEdge, FakeClient]:
    client = FakeClient()
    mqtt = MqttSettings(host="broker", device_id="cell7", protocol=protocol)  # type: ignore[arg-type]
    settings = dataclasses.replace(SETTINGS, data_interval_s=interval)
    edge = SparkplugEdge(
        settings, edge_connection(settings, mqtt), CODEC, ("r1", "r2"), "0.1.0",
        tmp_path / FILE_NAME, client_factory=lambda _: client, clock=clock, monotonic=clock,
    )  # fmt: skip
    return edge, client


def connect(edge: SparkplugEdge, client: FakeClient) -> None:
    edge._on_connect(client, None, None, SUCCESS, None)  # type: ignore[arg-type]


def scored(robot: str, score: float) -> ScoredWindow:
    w = WindowInfo(1.0, 2.0, 1, 2)
    return ScoredWindow(
        robot=robot, model=MODEL, program=-1, recon=score, sap=score, nap=score, score=score,
        threshold=0.8, smoothed=score, contributions={}, window=w,
        latency_s=0.0, start=0, stop=32, alarm_active=False,
    )  # fmt: skip


def raised(robot: str = "r1"):
    tracker = AlarmTracker(robot, AlarmSettings(alpha=1.0, k=1, n=1, clear_windows=1))
    return tracker.update(3.0, 1.0, WindowInfo(1.0, 2.0, 1, 2), MODEL)


def test_the_client_id_is_the_agents_plus_spb() -> None:
    mqtt = MqttSettings(host="broker", device_id="cell7")
    assert edge_connection(SETTINGS, mqtt).client_id == "rapp-agent-cell7-spb"
    own = SparkplugSettings(enabled=True, client_id="mine")
    assert edge_connection(own, mqtt).client_id == "mine"


def test_births_on_connect_then_data_with_incrementing_seq(tmp_path, clock) -> None:
    edge, client = make_edge(tmp_path, clock)
    edge.observe_alarm("r1", None)
    edge.start()
    assert client.sent == [], "nothing before the connection is up"
    topic, will, qos, retain = client.wills[0]
    assert topic == NODE.format("NDEATH") and qos == 1 and not retain
    assert will.values() == {"bdSeq": 0} and will.seq is None
    assert client.connect_args["clean_start"] is True

    connect(edge, client)
    assert client.subscribed == [NODE.format("NCMD")]
    assert client.kinds() == ["NBIRTH", "DBIRTH", "DBIRTH"]
    nbirth, r1, r2 = client.sent
    assert nbirth.payload.seq == 0 and nbirth.payload.metric("bdSeq").value == 0
    assert (r1.payload.seq, r2.payload.seq) == (1, 2)
    assert r1.topic == NODE.format("DBIRTH") + "/r1"
    assert r1.payload.metric("alarm/active").value is False
    assert r1.payload.metric("score").value is None
    assert all(s.qos == 0 and not s.retain for s in client.sent)
    # the next connect's will carries the next bdSeq, which is kept on disk
    assert client.wills[-1][1].values() == {"bdSeq": 1}
    assert (tmp_path / FILE_NAME).read_text().strip() == "1"

    edge.observe_alarm("r1", raised())
    ddata = client.sent[-1]
    assert ddata.topic == NODE.format("DDATA") + "/r1" and ddata.payload.seq == 3
    assert set(ddata.payload.values()) == {"alarm/active", "alarm/severity", "alarm/raise_id"}
    assert ddata.payload.metric("alarm/active").value is True


def test_score_data_is_rate_limited_and_health_flushes_it(tmp_path, clock) -> None:
    edge, client = make_edge(tmp_path, clock, interval=1.0)
    edge.start()
    connect(edge, client)
    births = len(client.sent)
    edge.observe_window(scored("r1", 0.5))  # right after the birth: held back
    assert len(client.sent) == births
    clock.t += 1.5
    edge.observe_window(scored("r1", 0.6))
    assert client.kinds()[births:] == ["DDATA"]
    assert client.sent[-1].payload.metric("score").value == 0.6
    edge.observe_window(scored("r1", 0.7))  # within the interval again
    health = RobotHealth(frames=FrameCounters(ok=42), windows={"scored": 3})
    edge.observe_health({"r1": health, "r2": health, "gone": health})
    sent = client.sent[births + 1 :]
    assert [s.topic.rsplit("/", 1)[1] for s in sent] == ["r1", "r2"]
    assert sent[0].payload.metric("score").value == 0.7
    assert sent[0].payload.metric("health/frames_ok").value == 42
    assert "score" not in sent[1].payload.values()
    edge.observe_health({"r1": health, "r2": health})  # unchanged: nothing sent
    assert len(client.sent) == births + 3


def test_a_rebirth_request_repeats_the_births_with_the_same_bdseq(tmp_path, clock) -> None:
    edge, client = make_edge(tmp_path, clock)
    edge.start()
    connect(edge, client)
    edge.observe_alarm("r1", raised())
    command = SparkplugPayload(1, (Metric("Node Control/Rebirth", DataType.BOOLEAN, True, 1),))
    message = type("Msg", (), {"topic": NODE.format("NCMD"), "payload": CODEC.encode(command)})
    before = len(client.sent)
    edge._on_message(client, None, message)  # type: ignore[arg-type]
    assert client.kinds()[before:] == ["NBIRTH", "DBIRTH", "DBIRTH"]
    assert client.sent[before].payload.seq == 0
    assert client.sent[before].payload.metric("bdSeq").value == 0
    assert client.sent[before + 1].payload.metric("alarm/active").value is True
    junk = type("Msg", (), {"topic": NODE.format("NCMD"), "payload": b"\xff\xff"})
    edge._on_message(client, None, junk)  # type: ignore[arg-type]
    assert len(client.sent) == before + 3


def test_no_data_while_disconnected_and_a_new_bdseq_after_reconnect(tmp_path, clock) -> None:
    edge, client = make_edge(tmp_path, clock)
    edge.start()
    connect(edge, client)
    edge._on_disconnect(client, None, None, SUCCESS, None)  # type: ignore[arg-type]
    before = len(client.sent)
    edge.observe_alarm("r1", raised())
    assert len(client.sent) == before
    connect(edge, client)
    nbirth, r1, _ = client.sent[before:]
    assert nbirth.payload.metric("bdSeq").value == 1
    assert r1.payload.metric("alarm/active").value is True, "the birth carries it"
    assert client.wills[-1][1].values() == {"bdSeq": 2}


def test_bdseq_continues_from_the_stored_value_and_wraps(tmp_path, clock) -> None:
    (tmp_path / FILE_NAME).write_text("255\n")
    edge, client = make_edge(tmp_path, clock)
    edge.start()
    assert client.wills[0][1].values() == {"bdSeq": 255}
    connect(edge, client)
    assert client.sent[0].payload.metric("bdSeq").value == 255
    assert (tmp_path / FILE_NAME).read_text().strip() == "0"


def test_seq_wraps_after_255(tmp_path, clock) -> None:
    edge, client = make_edge(tmp_path, clock, interval=0.0)
    edge.start()
    connect(edge, client)
    for i in range(300):
        edge.observe_window(scored("r1", float(i)))
    seqs = [s.payload.seq for s in client.sent]
    assert seqs[:3] == [0, 1, 2] and 255 in seqs
    assert all((b - a) % 256 == 1 for a, b in itertools.pairwise(seqs))


def test_stop_over_mqtt5_disconnects_with_the_will(tmp_path, clock) -> None:
    edge, client = make_edge(tmp_path, clock, protocol="5")
    edge.start()
    connect(edge, client)
    sent = len(client.sent)
    edge.stop()
    assert client.disconnected == [WILL_DISCONNECT]
    assert len(client.sent) == sent, "the broker publishes the registered NDEATH"
    edge.observe_alarm("r1", raised())
    assert len(client.sent) == sent, "nothing after the death"


def test_stop_over_mqtt311_publishes_ndeath_first(tmp_path, clock) -> None:
    edge, client = make_edge(tmp_path, clock, protocol="3.1.1")
    edge.start()
    assert "clean_start" not in client.connect_args
    connect(edge, client)
    edge.stop()
    death = client.sent[-1]
    assert death.topic == NODE.format("NDEATH") and death.qos == 1 and not death.retain
    assert death.payload.values() == {"bdSeq": 0}, "the bdSeq of the session's birth"
    assert client.disconnected == [None]


def test_stop_before_any_connect_just_disconnects(tmp_path, clock) -> None:
    edge, client = make_edge(tmp_path, clock, protocol="3.1.1")
    edge.start()
    edge.stop()
    assert client.sent == [] and client.disconnected == [None]
