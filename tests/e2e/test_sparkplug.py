"""Sparkplug B from a real agent through a real mosquitto, every payload decoded: births
before data, sequence numbers, the alarm state flipping in DDATA during a replayed fault,
a rebirth on request, NDEATH (the will) when the agent is SIGKILLed, the next bdSeq after a
restart, and NDEATH at a clean stop."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import paho.mqtt.publish as publish

from agent.sinks.sparkplug.codec import SparkplugCodec
from agent.sinks.sparkplug.metrics import DataType, Metric, SparkplugPayload
from agent.sinks.sparkplug.payloads import DEVICE_METRICS
from tests.support.broker import Message, MosquittoSub, wait_until
from tests.support.fixtures.daemon import AgentProcess, write_config
from tests.support.synthetic import currents, write_csv

CODEC = SparkplugCodec.load()
NODE = "spBv1.0/hall3/{}/ipc1"
NBIRTH, NDEATH, NCMD = NODE.format("NBIRTH"), NODE.format("NDEATH"), NODE.format("NCMD")
DBIRTH, DDATA = NODE.format("DBIRTH") + "/arm1", NODE.format("DDATA") + "/arm1"
SPARKPLUG = '[sparkplug]\nenabled = true\ngroup_id = "hall3"\ndata_interval_s = 0.2\n'


def fault_episode(path: Path, normal: int = 3000, fault: int = 4000, after: int = 6000) -> Path:
    """Normal currents, a 40 Hz ripple on J2 long enough to raise, then normal until it clears."""
    x = currents(normal + fault + after, seed=21)
    t = np.arange(fault) / 1000.0
    x[normal : normal + fault, 1] += 3.0 * np.sin(2 * np.pi * 40.0 * t)
    return write_csv(path, x)


def decoded(messages: list[Message]) -> list[tuple[str, SparkplugPayload]]:
    """What the edge node sent (the test's own NCMD left out)."""
    return [(m.topic, CODEC.decode(m.payload)) for m in messages if m.topic != NCMD]


def alarm_flips(sub: MosquittoSub) -> list[bool]:
    """The alarm/active values in arrival order, births and data alike."""
    return [
        p.metric("alarm/active").value
        for t, p in decoded(sub.messages())
        if t in (DBIRTH, DDATA) and "alarm/active" in p.values()
    ]


def rebirth_command() -> bytes:
    now = int(time.time() * 1000)
    metric = Metric("Node Control/Rebirth", DataType.BOOLEAN, True, now)
    return CODEC.encode(SparkplugPayload(now, (metric,)))


def test_births_data_rebirth_and_deaths(tmp_path, broker, bundle_path, agent_processes):
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        bundle=bundle_path,
        source=f'kind = "replay"\nfile = "{fault_episode(tmp_path / "ep.csv")}"\nspeed = 2.0\n',
        broker=broker,
        extra=SPARKPLUG,
    )
    with MosquittoSub(broker, ["spBv1.0/#"]) as sub:
        first = AgentProcess(config).start()
        agent_processes.append(first)
        wait_until(lambda: True in alarm_flips(sub), timeout=90, message="alarm/active true")
        wait_until(
            lambda: False in alarm_flips(sub)[alarm_flips(sub).index(True) :],
            timeout=60,
            message="alarm/active false after true",
        )
        session = decoded(sub.messages())
        topics = [t for t, _ in session]
        assert topics[:2] == [NBIRTH, DBIRTH], "births before any data"
        assert set(topics[2:]) <= {DDATA}
        nbirth, dbirth = session[0][1], session[1][1]
        bdseq = nbirth.metric("bdSeq").value
        assert bdseq == 0, "the first connect of a fresh state directory"
        assert nbirth.metric("Node Control/Rebirth").value is False
        assert [p.seq for _, p in session] == [i % 256 for i in range(len(session))]
        assert [m.name for m in dbirth.metrics] == [n for n, _ in DEVICE_METRICS]
        assert dbirth.metric("threshold").datatype == DataType.DOUBLE
        assert all(set(p.values()) <= set(dbirth.values()) for _, p in session[2:])
        assert all(m.qos == 0 and not m.retained for m in sub.messages() if m.topic != NCMD)
        raised = next(p for t, p in session if p.values().get("alarm/active") is True)
        assert raised.metric("alarm/severity").value in ("warning", "critical")
        assert raised.metric("alarm/raise_id").value
        wait_until(
            lambda: any(
                (p.values().get("health/frames_ok") or 0) > 0 for _, p in decoded(sub.messages())
            ),
            timeout=30,
            message="health metrics in DDATA",
        )

        # a host asks for a rebirth: same bdSeq, seq from 0, then the device again
        seen = len(sub.messages())
        publish.single(NCMD, rebirth_command(), hostname=broker.host, port=broker.port)
        sub.wait_for(lambda m: m.topic == DBIRTH, count=2)
        reborn = decoded(sub.messages()[seen:])
        assert [t for t, _ in reborn[:2]] == [NBIRTH, DBIRTH]
        assert reborn[0][1].seq == 0 and reborn[0][1].metric("bdSeq").value == bdseq

        first.signal(signal.SIGKILL)
        first.wait()
        (death,) = sub.wait_for(lambda m: m.topic == NDEATH, timeout=30)
        assert death.qos == 1 and not death.retained
        payload = CODEC.decode(death.payload)
        assert payload.values() == {"bdSeq": bdseq} and payload.seq is None

        # a restart continues with the next bdSeq, and a clean stop dies with it
        second = AgentProcess(config).start()
        agent_processes.append(second)
        births = sub.wait_for(lambda m: m.topic == NBIRTH, count=3, timeout=90)
        assert CODEC.decode(births[-1].payload).metric("bdSeq").value == bdseq + 1
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0, second.output()
        deaths = sub.wait_for(lambda m: m.topic == NDEATH, count=2, timeout=30)
        assert CODEC.decode(deaths[-1].payload).values() == {"bdSeq": bdseq + 1}
    assert "Traceback" not in first.output() + second.output()
