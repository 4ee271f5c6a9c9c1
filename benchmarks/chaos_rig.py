"""What every chaos scenario runs against: a recording full of faults, real ``rapp-agent run``
processes, the real mosquitto and ``mosquitto_sub`` of ``tests/support/broker.py``, and a
journal of every alarm event the agent commits.

**The journal.** The outbox deletes a row once the broker acknowledged it, so at the end of a
run the agent's database no longer says which alarms it raised. Before the agent first opens
its outbox, :meth:`Journal.install` creates it (with the agent's own :class:`Outbox`) and adds
two SQLite triggers that copy every alarm row into a side table when it is inserted and when
it is deleted (acknowledged). The copy commits in the *same transaction* as the agent's own
write, so after any kill the journal holds exactly the events that were durable: "raised" in
the chaos figures means committed to the outbox, the agent's durability point. The agent also
logs each event (``alarm raise … id=…``) just *before* that write; :func:`logged_events` reads
those lines, so an event decided but not yet committed when a SIGKILL landed is told apart
from one that was committed and then lost.

The helpers of ``tests/support`` report failures with ``pytest.fail``; :func:`as_benchmark_error`
turns those into :class:`~benchmarks.common.BenchmarkError`.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.publish as publish
import pytest

from agent.sinks.outbox import Outbox
from benchmarks.common import BenchmarkError
from firmware_config.channel_map import load_builtin_map
from firmware_config.simulator import SimulationConfig, Simulator, parse_fault, write_csv
from tests.support.broker import Message, MosquittoBroker, MosquittoSub
from tests.support.fixtures.daemon import AgentProcess

DEVICE = "chaos"
ROBOTS = ("arm0", "arm1")
BASE = f"rapp/v1/{DEVICE}"
# One environment for every agent: one thread for the numerical libraries (2 shared cores).
AGENT_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
READY = "agent.daemon: ready: "  # logged once the sources run (signal handlers long set)
_LOGGED = re.compile(r"alarm (raise|clear) robot=(\S+) .* id=(\S+)\s*$")

_JOURNAL = """
CREATE TABLE IF NOT EXISTS chaos_journal (
    what    TEXT NOT NULL,
    id      TEXT NOT NULL,
    topic   TEXT NOT NULL,
    payload BLOB,
    at      REAL NOT NULL
);
CREATE TRIGGER IF NOT EXISTS chaos_put AFTER INSERT ON messages WHEN NEW.kind = 'alarm'
BEGIN
    INSERT INTO chaos_journal VALUES
        ('put', NEW.id, NEW.topic, NEW.payload, (julianday('now') - 2440587.5) * 86400.0);
END;
CREATE TRIGGER IF NOT EXISTS chaos_ack AFTER DELETE ON messages WHEN OLD.kind = 'alarm'
BEGIN
    INSERT INTO chaos_journal VALUES
        ('ack', OLD.id, OLD.topic, NULL, (julianday('now') - 2440587.5) * 86400.0);
END;
"""


@contextlib.contextmanager
def as_benchmark_error(what: str) -> Iterator[None]:
    """Re-raise a ``pytest.fail`` from the test helpers as a :class:`BenchmarkError`."""
    try:
        yield
    except pytest.fail.Exception as err:
        raise BenchmarkError(f"{what}: {err}") from None


# -- workload -------------------------------------------------------------------------------


def fault_recording(
    path: Path, *, seconds: int = 48, period_s: int = 12, fault_s: int = 6, seed: int = 3
) -> Path:
    """Simulated currents (the shipped six-axis map) with a dropped payload for ``fault_s`` of
    every ``period_s`` seconds: with the alarm settings of :func:`agent_config` each episode
    raises one alarm and clears it."""
    channel_map = load_builtin_map()
    faults = tuple(
        parse_fault(f"payload:J2:onset={start}:duration={fault_s}")
        for start in range(period_s - fault_s, seconds - fault_s, period_s)
    )
    config = SimulationConfig(
        seed=seed,
        duration_s=float(seconds),
        sample_rate_hz=int(channel_map.sample_rate_hz),
        schedule=((1, 1),),
        faults=faults,
    )
    write_csv(Simulator(config, channel_map).chunks(1000), path, channel_map)
    return path


def agent_config(
    path: Path,
    *,
    state_dir: Path,
    recording: Path,
    port: int,
    speed: float,
    robots: Sequence[str] = ROBOTS,
) -> Path:
    """An agent replaying ``recording`` in a loop for each robot, with the shipped default
    bundle and alarm settings that raise and clear on single windows (many events per
    minute, so a kill at a random moment often lands near an alarm write)."""
    body = [
        "[agent]",
        f'device_id = "{DEVICE}"',
        f'state_dir = "{state_dir}"',
        'log_level = "info"',
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "keepalive = 5",
        "reconnect_min_delay = 0.2",
        "reconnect_max_delay = 1.0",
        "[telemetry]",
        "score_interval_s = 0.5",
        "status_interval_s = 1",
        "[trust]",
        "allow_unsigned = true",
        "[ota]",
        "enabled = false",
    ]
    for robot in robots:
        body += [
            "[[robots]]",
            f'id = "{robot}"',
            'bundle = "default"',
            "[robots.source]",
            'kind = "replay"',
            f'file = "{recording}"',
            "loop = true",
            f"speed = {speed}",
            "[robots.alarm]",
            "ewma_alpha = 1.0",
            "debounce_k = 1",
            "debounce_n = 1",
            "clear_windows = 1",
        ]
    path.write_text("\n".join(body) + "\n")
    return path


# -- agent processes ------------------------------------------------------------------------


@dataclass
class AgentRuns:
    """Every ``rapp-agent run`` started on one config, in order; the last one is current."""

    config: Path
    processes: list[AgentProcess] = field(default_factory=list)
    killed: list[bool] = field(default_factory=list)

    @property
    def current(self) -> AgentProcess:
        return self.processes[-1]

    def start(self) -> AgentProcess:
        time.sleep(0.002)  # the log file name is the start time in milliseconds
        process = AgentProcess(self.config, env=AGENT_ENV).start()
        self.processes.append(process)
        self.killed.append(False)
        return process

    def alive(self) -> bool:
        proc = self.current.proc if self.processes else None
        return proc is not None and proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the current process (no drain, no ``stopped``, no checkpoint)."""
        self.current.signal(signal.SIGKILL)
        self.current.wait(30)
        self.killed[-1] = True

    def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM the current process; its exit status (it must drain and exit 0)."""
        self.current.signal(signal.SIGTERM)
        try:
            return self.current.wait(timeout)
        except subprocess.TimeoutExpired:
            self.current.stop()
            raise BenchmarkError(
                f"agent still running {timeout:.0f} s after SIGTERM:\n{self.output()[-3000:]}"
            ) from None

    def output(self) -> str:
        return self.current.output()

    def require_alive(self, what: str) -> None:
        if not self.alive():
            raise BenchmarkError(f"agent exited {what}:\n{self.output()[-3000:]}")

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()


def logged_events(text: str) -> list[tuple[str, str, str]]:
    """``(kind, robot, id)`` of every alarm event an agent log names, in order."""
    out = []
    for line in text.splitlines():
        match = _LOGGED.search(line)
        if match:
            out.append((match.group(1), match.group(2), match.group(3)))
    return out


# -- the journal ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalEntry:
    id: str
    topic: str
    payload: dict[str, Any]
    at: float


@dataclass(frozen=True)
class JournalView:
    """Alarm rows the agent committed (``puts``: events and retained states), acknowledged by
    the broker (``acked``: id → unix time the row was deleted) and still queued at the end."""

    puts: list[JournalEntry]
    acked: dict[str, float]
    queued: set[str]

    def events(self) -> list[JournalEntry]:
        """The alarm events (``<robot>/alarm``), without the retained ``alarm/active`` rows."""
        return [e for e in self.puts if e.topic.endswith("/alarm")]


class Journal:
    """The side table of every alarm row the agent's outbox committed (module docstring)."""

    def __init__(self, db: Path) -> None:
        self.db = db

    @classmethod
    def install(cls, state_dir: Path) -> Journal:
        db = state_dir / "outbox.sqlite3"
        Outbox.open(db).close()  # the agent's schema, exactly as the agent creates it
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.executescript(_JOURNAL)
        return cls(db)

    def read(self) -> JournalView:
        """Read once the agent has exited (the file is the agent's while it runs)."""
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            rows = conn.execute(
                "SELECT what, id, topic, payload, at FROM chaos_journal ORDER BY rowid"
            ).fetchall()
            queued = {r[0] for r in conn.execute("SELECT id FROM messages WHERE kind = 'alarm'")}
        puts = [
            JournalEntry(mid, topic, json.loads(bytes(payload)), at)
            for what, mid, topic, payload, at in rows
            if what == "put"
        ]
        acked = {mid: at for what, mid, _, _, at in rows if what == "ack"}
        return JournalView(puts, acked, queued)


# -- what the subscriber saw ----------------------------------------------------------------


class Observer:
    """A persistent QoS 1 ``mosquitto_sub`` on everything the agent publishes, plus a topic of
    its own for round trips. It survives broker restarts (session expiry 600 s), and
    :meth:`resync` tells when it is back, so no broker is killed while it holds messages for
    the subscriber only in memory. Open with :meth:`start`."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.broker = broker
        self.sync_topic = f"chaos-sync/{uuid.uuid4().hex[:12]}"
        self.sub = MosquittoSub(broker, [f"{BASE}/#", self.sync_topic])

    def start(self) -> Observer:
        with as_benchmark_error("subscriber"):
            self.sub.start()
        return self

    def messages(self) -> list[Message]:
        """Everything the agent published that arrived so far, in order."""
        return [m for m in self.sub.messages() if m.topic != self.sync_topic]

    def resync(self, timeout: float = 30.0) -> None:
        """Until a fresh token makes the round trip through the broker: the subscriber is
        connected and has received everything the broker queued for it before the token."""
        token = uuid.uuid4().hex.encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                publish.single(
                    self.sync_topic, token, qos=1, hostname=self.broker.host, port=self.broker.port
                )
            got = self.sub.wait_for(
                lambda m: m.topic == self.sync_topic and m.payload == token, timeout=0.5, fail=False
            )
            if got:
                return
        raise BenchmarkError(f"the subscriber did not come back within {timeout:.0f} s")

    def stop(self) -> None:
        self.sub.stop()


def alarm_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Alarm event payloads (``<robot>/alarm``) in arrival order, duplicates included."""
    return [m.json() for m in messages if m.topic.endswith("/alarm") and m.payload]


def last_status(messages: Sequence[Message]) -> dict[str, Any]:
    """The newest live status: a retained one (re-sent when the subscriber re-subscribes after
    a broker restart) may be a dead process's, restored from the broker's persistence."""
    docs = [
        m.json() for m in messages if m.topic == f"{BASE}/status" and m.payload and not m.retained
    ]
    return docs[-1] if docs else {}


def retained_states(broker: MosquittoBroker, robots: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The retained ``alarm/active`` of each robot, as a new subscriber gets it."""
    topics = [f"{BASE}/{robot}/alarm/active" for robot in robots]
    with as_benchmark_error("retained alarm/active"), MosquittoSub(broker, topics) as late:
        late.wait_for(lambda m: m.retained, count=len(topics), timeout=15, fail=False)
        return {
            m.topic.split("/")[-3]: m.json() for m in late.messages() if m.retained and m.payload
        }


def wait_for(
    condition: Callable[[], Any],
    timeout: float,
    what: str,
    agent: AgentRuns | None = None,
    interval: float = 0.1,
) -> Any:
    """Poll ``condition`` until truthy (returned); BenchmarkError at the deadline or when
    ``agent`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if agent is not None:
            agent.require_alive(f"while waiting for {what}")
        if time.monotonic() >= deadline:
            tail = "" if agent is None else f"\n{agent.output()[-3000:]}"
            raise BenchmarkError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")
        time.sleep(interval)


def is_serving(sub: Observer, agents: AgentRuns, robots: Sequence[str], after: int = 0) -> bool:
    """The current agent process logged ``ready`` and a live status after message ``after``
    lists every robot online."""
    if READY not in agents.output():
        return False
    status = last_status(sub.messages()[after:])
    return status.get("state") == "online" and set(robots) <= set(status.get("robots", {}))
