"""Kill rounds: the agent SIGKILLed, the broker ``kill -9``ed, or both at once, at random
moments, while alarms are raised and cleared about twice a second.

Each scenario is its own run (fresh broker, state directory and subscriber) of ``rounds``
rounds: wait a random time, kill, wait a random outage (the broker), restart on the same port
and the same state directory. At the end the agent is stopped cleanly (SIGTERM, it must exit
0) and the figures are counted per raise/clear event the agent committed (see
:mod:`benchmarks.chaos_rig` for the journal):

- **delivered**: committed events the persistent subscriber received; **lost**: committed
  and never received, each with whether and when the broker had acknowledged it. After every
  broker restart the next kill waits until the subscriber is back (a token round trip):
  mosquitto keeps what it queues for a disconnected persistent session in memory until its
  next autosave, so a ``kill -9`` in that window loses messages the agent was already
  acknowledged for — the broker's durability, which no publisher can make up for;
- **duplicates**: extra deliveries of an id (allowed: at-least-once, same id);
- **stuck**: a raise neither cleared (a delivered clear names it as ``raise_id``) nor the
  active alarm of its robot in the retained ``alarm/active`` at the end;
- **uncommitted at kill**: events the agent logged and had not yet committed when the
  SIGKILL landed (the log line precedes the write); they never existed durably, so they are
  not counted as raised.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.chaos_rig import (
    READY,
    ROBOTS,
    AgentRuns,
    Journal,
    JournalView,
    Observer,
    agent_config,
    alarm_messages,
    as_benchmark_error,
    is_serving,
    last_status,
    logged_events,
    retained_states,
    wait_for,
)
from benchmarks.common import BenchmarkError
from tests.support.broker import MosquittoBroker

AGENT, BROKER, BOTH = "agent SIGKILL", "broker kill -9", "both at once"
SCENARIOS = (AGENT, BROKER, BOTH)


@dataclass(frozen=True)
class KillPlan:
    """Rounds per scenario and the random timing of each round (seconds)."""

    rounds: dict[str, int]
    # A round that kills the agent lands in its start-up (bundle load, the initial retained
    # states, the resumed alarm) with this probability, 0.3–startup_delay_s after the spawn;
    # otherwise 0–serving_delay_s after it logged ready, while alarms are being written.
    startup_share: float = 0.25
    startup_delay_s: float = 3.0
    serving_delay_s: float = 3.0
    broker_delay_s: float = 3.0
    max_outage_s: float = 2.0
    speed: float = 10.0  # replay speed: about two alarm events per second over two robots


def split_rounds(total: int) -> dict[str, int]:
    """``total`` rounds over the scenarios, round-robin (at least one each)."""
    total = max(total, len(SCENARIOS))
    return {
        s: total // len(SCENARIOS) + (i < total % len(SCENARIOS)) for i, s in enumerate(SCENARIOS)
    }


class _Rig:
    """One scenario's broker, agent processes and subscriber."""

    def __init__(self, work: Path, recording: Path, plan: KillPlan) -> None:
        self.broker = MosquittoBroker(work / "broker")
        state = work / "state"
        state.mkdir(parents=True)
        self.journal = Journal.install(state)
        config = agent_config(
            work / "agent.toml",
            state_dir=state,
            recording=recording,
            port=self.broker.port,
            speed=plan.speed,
        )
        self.agents = AgentRuns(config)
        self.sub: Observer | None = None
        self.crashes: list[dict[str, Any]] = []

    def open(self) -> None:
        with as_benchmark_error("broker"):
            self.broker.start()
        self.sub = Observer(self.broker).start()
        self.agents.start()
        wait_for(
            lambda: is_serving(self.sub, self.agents, ROBOTS), 90, "the agent online", self.agents
        )

    def close(self) -> None:
        if self.sub is not None:
            self.sub.stop()
        self.agents.stop_all()
        self.broker.kill()

    def note_crash(self) -> None:
        """An agent that exited without being killed is a finding: record it, start again."""
        if self.agents.alive():
            return
        proc = self.agents.current.proc
        self.crashes.append(
            {"rc": None if proc is None else proc.returncode, "log": self.agents.output()[-2000:]}
        )
        self.agents.start()

    def restart_broker(self) -> None:
        with as_benchmark_error("broker restart"):
            self.broker.start()
        assert self.sub is not None
        self.sub.resync()


def _wait_moment(rig: _Rig, scenario: str, rng: random.Random, plan: KillPlan) -> tuple[str, float]:
    """Sleep until the random kill moment of a round; (phase hit, seconds slept)."""
    if scenario == BROKER:
        delay, phase = rng.uniform(0.3, plan.broker_delay_s), "serving"
    elif rng.random() < plan.startup_share:
        delay, phase = rng.uniform(0.3, plan.startup_delay_s), "start-up"
    else:
        wait_for(lambda: READY in rig.agents.output(), 90, "the agent ready", rig.agents)
        delay, phase = rng.uniform(0.0, plan.serving_delay_s), "serving"
    time.sleep(delay)
    if phase == "start-up" and READY in rig.agents.output():
        phase = "serving"  # it started faster than the draw
    return phase, delay


def _round(rig: _Rig, scenario: str, rng: random.Random, plan: KillPlan) -> dict[str, Any]:
    rig.note_crash()
    phase, delay = _wait_moment(rig, scenario, rng, plan)
    rig.note_crash()
    started = time.time()
    outage = rng.uniform(0.0, plan.max_outage_s)
    order = ""
    if scenario == AGENT:
        rig.agents.kill()
        rig.agents.start()
    elif scenario == BROKER:
        rig.broker.kill()
        time.sleep(outage)
        rig.restart_broker()
    else:
        rig.broker.kill()
        rig.agents.kill()
        time.sleep(outage)
        order = rng.choice(("broker first", "agent first"))
        if order == "agent first":
            rig.agents.start()
            rig.restart_broker()
        else:
            rig.restart_broker()
            rig.agents.start()
    return {
        "phase": phase,
        "delay_s": round(delay, 2),
        "outage_s": round(outage, 2) if scenario != AGENT else 0.0,
        "restart": order,
        "killed_at": started,
    }


def _finish(rig: _Rig) -> tuple[int, dict[str, dict[str, Any]]]:
    """Let the last restart settle, stop the agent cleanly; its exit status and the retained
    alarm states the broker then holds."""
    assert rig.sub is not None
    sub = rig.sub
    rig.note_crash()
    mark = len(sub.messages())

    def drained() -> bool:
        if not is_serving(sub, rig.agents, ROBOTS, mark):
            return False
        return last_status(sub.messages()[mark:])["outbox"]["depth"]["alarm"] == 0

    wait_for(drained, 60, "the outbox drained after the last round", rig.agents)
    rc = rig.agents.terminate()
    sub.resync()
    return rc, retained_states(rig.broker, ROBOTS)


def run_scenario(
    scenario: str, rounds: int, work: Path, recording: Path, rng: random.Random, plan: KillPlan
) -> dict[str, Any]:
    """``rounds`` kill rounds of one scenario; the figures (module docstring) and the rounds."""
    rig = _Rig(work, recording, plan)
    started = time.monotonic()
    try:
        rig.open()
        log = [_round(rig, scenario, rng, plan) for _ in range(rounds)]
        rc, retained = _finish(rig)
        assert rig.sub is not None
        received = alarm_messages(rig.sub.messages())
    finally:
        rig.close()
    logs = [
        (p.output(), killed)
        for p, killed in zip(rig.agents.processes, rig.agents.killed, strict=True)
    ]
    figures = tally(rig.journal.read(), received, logs, retained)
    _time_to_next_kill(figures["lost_ids"], [r["killed_at"] for r in log])
    figures.update(
        scenario=scenario,
        rounds=rounds,
        agent_processes=len(rig.agents.processes),
        exit_code=rc,
        crashes=rig.crashes,
        seconds=round(time.monotonic() - started, 1),
        round_log=log,
        startup_kills=sum(1 for r in log if r["phase"] == "start-up"),
    )
    return figures


def _time_to_next_kill(lost: list[dict[str, Any]], kills: Sequence[float]) -> None:
    """Add how long after each lost event's acknowledgement the next kill came: a broker
    ``kill -9`` within a few milliseconds of its PUBACK loses what it had not yet forwarded
    (it persists only every ``autosave_interval``)."""
    for entry in lost:
        acked = entry["acked_at"]
        later = [k - acked for k in kills if acked is not None and k >= acked - 0.05]
        entry["next_kill_after_ack_s"] = round(min(later), 4) if later else None


def _uncommitted(
    logs: Sequence[tuple[str, bool]], committed: set[str]
) -> tuple[list[str], list[str]]:
    """Logged ids never committed: (those at the tail of a SIGKILLed process's log — the kill
    landed between the log line and the write —, any others, which would be a real loss)."""
    at_kill: list[str] = []
    elsewhere: list[str] = []
    for text, killed in logs:
        ids = [mid for _, _, mid in logged_events(text)]
        tail = len(ids)
        while tail > 0 and ids[tail - 1] not in committed:
            tail -= 1
        for i, mid in enumerate(ids):
            if mid in committed:
                continue
            (at_kill if killed and i >= tail else elsewhere).append(mid)
    return at_kill, elsewhere


def _stuck(
    raises: dict[str, str],
    received: Sequence[dict[str, Any]],
    retained: dict[str, dict[str, Any]],
) -> tuple[list[str], dict[str, str]]:
    """Raise ids (of ``raises``: id → robot) neither cleared by a delivered clear nor the
    active alarm of their robot in the retained ``alarm/active``; and those active alarms."""
    if missing := set(raises.values()) - set(retained):
        raise BenchmarkError(f"no retained alarm/active for {sorted(missing)}")
    cleared = {p.get("raise_id") for p in received if p["kind"] == "clear"}
    active = {
        robot: (state.get("alarm") or {}).get("raise_id")
        for robot, state in retained.items()
        if state.get("active")
    }
    stuck = sorted(r for r, robot in raises.items() if r not in cleared and active.get(robot) != r)
    return stuck, active


def tally(
    view: JournalView,
    received: Sequence[dict[str, Any]],
    logs: Sequence[tuple[str, bool]],
    retained: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The figures of one run from the journal, the subscriber's alarm payloads, the agent
    logs (text, SIGKILLed?) and the retained ``alarm/active`` per robot."""
    committed = {e.id: e.payload for e in view.events()}
    copies = Counter(p["id"] for p in received)
    lost = sorted(committed.keys() - copies.keys())
    raises = {mid: p["robot"] for mid, p in committed.items() if p["kind"] == "raise"}
    stuck, active = _stuck(raises, received, retained)
    at_kill, elsewhere = _uncommitted(logs, set(committed))
    return {
        "raised": len(committed),
        "raises": len(raises),
        "delivered": len(committed.keys() & copies.keys()),
        "lost": len(lost),
        "lost_ids": [
            {
                "id": mid,
                "acked_by_broker": mid in view.acked,
                "acked_at": view.acked.get(mid),
                "still_queued": mid in view.queued,
            }
            for mid in lost
        ],
        "duplicates": sum(n - 1 for n in copies.values()),
        "unknown_ids": sorted(copies.keys() - committed.keys()),
        "stuck": len(stuck),
        "stuck_ids": stuck,
        "active_at_end": sorted(r for r in active.values() if r),
        "uncommitted_at_kill": len(at_kill),
        "logged_never_committed": elsewhere,
    }
