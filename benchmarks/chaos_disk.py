"""Disk-full runs: the agent's state directory on a small tmpfs that is filled to the last byte
while alarms are raised, then freed (``tests/support/full_disk.py``; needs root).

Three runs: with the broker up throughout; with the broker stopped before the disk fills and
started again while it is still full; and with the agent stopped (SIGTERM) and started again
while the disk is full (it must start and serve on a full disk). Counted per alarm event the
agent *logged* (every event it decided; no kill here, so each one must arrive): lost,
published twice (the same id received more than once), the most copies of any one message id
on any topic (a re-publish loop shows here), whether ``status`` reported ``disk_full`` (a full
disk need not refuse: SQLite reuses the pages of its write-ahead log), the outbox's log lines
about it, tracebacks, and the agent's exit status after SIGTERM once the space is back (must
be 0; it must never exit by itself on a full disk).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.chaos_rig import (
    ROBOTS,
    AgentRuns,
    Observer,
    agent_config,
    alarm_messages,
    as_benchmark_error,
    is_serving,
    last_status,
    logged_events,
    wait_for,
)
from benchmarks.common import BenchmarkError
from tests.support.broker import Message, MosquittoBroker
from tests.support.full_disk import FullDisk, mounted_tmpfs

REFUSED = "the disk refuses writes"
RECOVERED = "the disk takes writes again"
TMPFS_SIZE = "8m"


@dataclass(frozen=True)
class DiskRun:
    name: str
    broker_up: bool = True
    restart_while_full: bool = False


RUNS = (
    DiskRun("broker up"),
    DiskRun("broker down while full", broker_up=False),
    DiskRun("agent restarted while full", restart_while_full=True),
)


@dataclass(frozen=True)
class DiskPlan:
    full_s: float = 10.0  # the disk stays full at least this long …
    events_while_full: int = 6  # … and until this many alarm events were raised meanwhile
    speed: float = 10.0


def _logged_ids(agents: AgentRuns) -> list[str]:
    """Every event id the agent processes of this run logged, in order."""
    return [mid for p in agents.processes for _, _, mid in logged_events(p.output())]


def _output(agents: AgentRuns) -> str:
    return "\n".join(p.output() for p in agents.processes)


def _disk_full_reported(messages: list[Message]) -> dict[str, Any] | None:
    for m in messages:
        if m.topic.endswith("/status") and m.payload:
            full = (m.json().get("outbox") or {}).get("disk_full")
            if full:
                return full
    return None


def _all_received(sub: Observer, ids: list[str]) -> bool:
    got = {p["id"] for p in alarm_messages(sub.messages())}
    return set(ids) <= got


def _restart(agents: AgentRuns, sub: Observer) -> int:
    """SIGTERM and start again (on the full disk); the first process's exit status."""
    rc = agents.terminate()
    mark = len(sub.messages())
    agents.start()
    wait_for(
        lambda: is_serving(sub, agents, ROBOTS, mark), 90, "the agent online on a full disk", agents
    )
    return rc


def _fill_and_free(
    agents: AgentRuns,
    sub: Observer,
    broker: MosquittoBroker,
    disk: FullDisk,
    run: DiskRun,
    plan: DiskPlan,
) -> dict[str, Any]:
    """Fill the disk while alarms are raised (broker stopped meanwhile, or the agent
    restarted, as ``run`` says), hold it full, then free it; what happened while full."""
    wait_for(lambda: _logged_ids(agents), 60, "a first alarm", agents)
    if not run.broker_up:
        broker.stop()
    mark = len(sub.messages())
    disk.fill()
    filled = time.monotonic()
    at_fill = len(_logged_ids(agents))
    wait_for(
        lambda: (
            time.monotonic() - filled >= plan.full_s
            and len(_logged_ids(agents)) - at_fill >= plan.events_while_full
        ),
        90,
        "alarms raised on the full disk",
        agents,
    )
    stopped_while_full = _restart(agents, sub) if run.restart_while_full else None
    if run.restart_while_full:
        at_restart = len(_logged_ids(agents))
        wait_for(
            lambda: len(_logged_ids(agents)) - at_restart >= plan.events_while_full,
            90,
            "alarms raised after the restart on the full disk",
            agents,
        )
    if not run.broker_up:
        with as_benchmark_error("broker restart"):
            broker.start()
        sub.resync()
    raised_while_full = _logged_ids(agents)
    wait_for(lambda: _all_received(sub, raised_while_full), 60, "delivery while full", agents)
    # A status after the broker is back says whether the disk refused writes meanwhile
    # (SQLite reuses the pages of its write-ahead log, so a full disk need not refuse).
    time.sleep(1.5)
    full = _disk_full_reported(sub.messages()[mark:])
    full_s = time.monotonic() - filled
    disk.free()
    freed = len(sub.messages())

    def recovered() -> bool:
        status = last_status(sub.messages()[freed:])
        return status.get("state") == "online" and not status["outbox"].get("disk_full")

    wait_for(recovered, 60, "status without disk_full after freeing", agents)
    return {
        "events_while_full": len(raised_while_full) - at_fill,
        "full_s": round(full_s, 1),
        "disk_full_reported": full is not None,
        "disk_full_status": full,
        "exit_code_stopped_while_full": stopped_while_full,
        "fill_mark": mark,
    }


def run_disk_full(work: Path, recording: Path, run: DiskRun, plan: DiskPlan) -> dict[str, Any]:
    """One disk-full run (module docstring); its figures."""
    work.mkdir(parents=True)
    broker = MosquittoBroker(work / "broker")
    started = time.monotonic()
    with as_benchmark_error("broker"):
        broker.start()
    try:
        with mounted_tmpfs(work / "state", size=TMPFS_SIZE) as disk:
            config = agent_config(
                work / "agent.toml",
                state_dir=disk.root,
                recording=recording,
                port=broker.port,
                speed=plan.speed,
            )
            agents = AgentRuns(config)
            sub = Observer(broker).start()
            try:
                agents.start()
                wait_for(lambda: is_serving(sub, agents, ROBOTS), 90, "the agent online", agents)
                phase = _fill_and_free(agents, sub, broker, disk, run, plan)
                wait_for(lambda: _all_received(sub, _logged_ids(agents)), 60, "delivery", agents)
                rc = agents.terminate()
                sub.resync()
                messages = sub.messages()
            finally:
                sub.stop()
                agents.stop_all()
    except RuntimeError as err:  # mounted_tmpfs: no tmpfs (not root)
        raise BenchmarkError(str(err)) from err
    finally:
        broker.kill()
    return (
        _figures(agents, messages, rc, run, phase.pop("fill_mark"))
        | phase
        | {"seconds": round(time.monotonic() - started, 1)}
    )


def _copies(messages: list[Message], mid: str, mark: int) -> dict[str, Any]:
    """Where the copies of alarm ``mid`` arrived: before the disk was filled (and, in the
    broker-down run, before the broker stopped) or after."""
    at = [i for i, m in enumerate(messages) if m.topic.endswith("/alarm") and m.json()["id"] == mid]
    return {
        "id": mid,
        "before_fill": sum(i < mark for i in at),
        "after": sum(i >= mark for i in at),
    }


def _figures(
    agents: AgentRuns, messages: list[Message], rc: int, run: DiskRun, fill_mark: int
) -> dict[str, Any]:
    logged = _logged_ids(agents)
    copies = Counter(p["id"] for p in alarm_messages(messages))
    per_message = Counter(
        (m.topic, doc["id"])
        for m in messages
        if m.payload and isinstance(doc := m.json(), dict) and "id" in doc
    )
    (loop_topic, _), most = per_message.most_common(1)[0] if per_message else (("-", ""), 0)
    log = _output(agents)
    return {
        "run": run.name,
        "raised": len(logged),
        "delivered": len(set(logged) & copies.keys()),
        "lost": len(set(logged) - copies.keys()),
        "lost_ids": sorted(set(logged) - copies.keys()),
        "published_twice": sum(1 for mid in logged if copies[mid] > 1),
        "published_twice_ids": [
            _copies(messages, mid, fill_mark) for mid in logged if copies[mid] > 1
        ],
        "most_copies_of_one_message": most,
        "most_copied_topic": loop_topic,
        "refused_logged": log.count(REFUSED),
        "recovered_logged": log.count(RECOVERED),
        "tracebacks": log.count("Traceback"),
        "exit_code": rc,
        "agent_processes": len(agents.processes),
    }
