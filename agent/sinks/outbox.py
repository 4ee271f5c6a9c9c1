"""Disk-backed outbox: the durable queue between the scoring pipeline and MQTT.

The pipeline ``put``s messages; the MQTT publisher reads them with ``next_batch`` and deletes
each one with ``ack`` only after the broker acknowledged it (PUBACK). So a message survives
broker outages, agent crashes and restarts until it is delivered — at least once: a crash
between PUBACK and ``ack`` re-sends it, which is why every message has an ``id`` that is also
written into its JSON payload, so subscribers can drop duplicates.

Kinds and their guarantees:

- ``alarm`` / ``event``: never dropped. The insert is committed with ``synchronous=FULL``
  (WAL fsync'ed before ``put`` returns), so a message ``put`` returned from survives a kill -9
  or a power cut. QoS must be >= 1 — without an acknowledgement nothing could be deleted
  "after the broker acknowledged it".
- ``telemetry``: bounded to ``telemetry_max_rows``; when full, the oldest telemetry rows are
  dropped and counted. Committed with ``synchronous=NORMAL`` (no fsync per row): losing the
  last few score samples on power loss is acceptable, an fsync per sample on an SD card is not.
  Acks are committed the same way: a lost ack only causes a duplicate delivery.

The last payload ``put`` with ``retain`` on each topic is also kept (table ``retained``, same
transaction as the message), so after a restart the agent knows what subscribers were last told
— an active alarm is restored from it instead of silently vanishing.

Drain order is alarms and events first (in insertion order), then telemetry (in insertion
order), so a backlog of scores after an outage cannot delay an alarm.

Thread-safe (one SQLite connection behind a lock): the pipeline thread puts, the publisher
thread reads, and the paho network thread acks. Single process: do not open the same file
from two agents.

Usage::

    box = Outbox.open(state_dir / "outbox.sqlite3", telemetry_max_rows=10_000)
    msg_id = box.put_json(topics.alarm("r1"), payload, kind="alarm", qos=1)
    for msg in box.next_batch(16): ...  # publish; on PUBACK: box.ack(msg.id)
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

from agent.core.errors import AgentRuntimeError
from agent.sinks.spill import DiskTrouble, HeldMessage, Spill, free_bytes, storage_problem

log = logging.getLogger(__name__)
# Free space the state disk needs before the outbox leaves the disk-full state. A write can
# succeed on a full disk (SQLite reuses pages of its log) and the next one fail again; without
# this margin the state, its log lines and `status.outbox.disk_full` flapped about once a
# second while the disk stayed full. Held messages are written at every retry regardless.
RECOVERY_FREE_BYTES = 1 << 20
Kind = Literal["alarm", "event", "telemetry"]
KINDS: tuple[str, ...] = get_args(Kind)
# Lower drains first; within a priority, insertion order.
_PRIORITY = {"alarm": 0, "event": 0, "telemetry": 1}
SCHEMA_VERSION = 1
DEFAULT_TELEMETRY_MAX_ROWS = 10_000
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20
# synchronous mode a freshly opened connection is left in (puts switch it per kind)
_OPEN_SYNC = "FULL"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT    NOT NULL UNIQUE,
    kind     TEXT    NOT NULL CHECK (kind IN ('alarm', 'event', 'telemetry')),
    priority INTEGER NOT NULL,
    topic    TEXT    NOT NULL,
    payload  BLOB    NOT NULL,
    qos      INTEGER NOT NULL CHECK (qos IN (0, 1, 2)),
    retain   INTEGER NOT NULL CHECK (retain IN (0, 1)),
    created  REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_drain ON messages (priority, seq);
CREATE INDEX IF NOT EXISTS messages_kind ON messages (kind, seq);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS retained (
    topic   TEXT PRIMARY KEY,
    payload BLOB NOT NULL,
    updated REAL NOT NULL
);
"""


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (if SQLite has not already)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class OutboxError(AgentRuntimeError):
    """Base class of outbox errors (bad arguments, storage failures, closed outbox)."""


class OutboxClosedError(OutboxError):
    """The outbox was used after :meth:`Outbox.close`."""


class OutboxDuplicateError(OutboxError):
    """A message with this id is already queued."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One queued message. ``seq`` is the storage order; ``id`` is the de-duplication key."""

    seq: int
    id: str
    kind: Kind
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to queue (see :meth:`Outbox.put_many`)."""

    topic: str
    payload: bytes
    kind: Kind
    qos: int = 1
    retain: bool = False
    msg_id: str | None = None


def json_message(
    topic: str, obj: Mapping[str, Any], *, kind: Kind, qos: int = 1, retain: bool = False
) -> NewMessage:
    """``obj`` as compact JSON; its ``"id"`` (generated if missing and written into the
    payload) becomes the message id, so the id a subscriber sees is always the outbox id."""
    mid = obj.get("id") or uuid.uuid4().hex
    try:
        payload = json.dumps(
            {**obj, "id": mid}, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (TypeError, ValueError) as err:
        raise OutboxError(f"payload for {topic!r} is not serializable as JSON: {err}") from err
    return NewMessage(topic, payload, kind, qos, retain, str(mid))


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Depth per kind, and counters that persist across restarts."""

    alarm: int
    event: int
    telemetry: int
    telemetry_dropped: int
    enqueued_total: int
    acked_total: int
    oldest_created: float | None
    held: int = 0  # alarms/events in memory because the disk refused them
    held_dropped: int = 0
    storage: DiskTrouble | None = None

    @property
    def depth(self) -> int:
        return self.alarm + self.event + self.telemetry


def _check_telemetry_max_rows(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OutboxError(f"telemetry_max_rows = {value!r}: must be an integer")
    if value < 1:
        raise OutboxError(f"telemetry_max_rows = {value!r}: must be >= 1; fix: e.g. 10000")
    return value


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the WAL database at ``path`` with the current schema."""
    fix = (
        f"fix: check permissions/space of {path.parent}, or move {path} aside "
        "(its undelivered messages are then lost) and restart"
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing is left in an
        # implicit transaction between calls.
        conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as err:
        raise OutboxError(f"outbox {path}: cannot open: {err}; {fix}") from err
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(
                f"outbox {path}: journal_mode is {mode!r}, WAL is required; "
                "fix: put the state directory on a local filesystem"
            )
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise OutboxError(
                f"outbox {path}: schema version {version} is newer than this agent "
                f"({SCHEMA_VERSION}); fix: upgrade the agent or move the file aside"
            )
        conn.executescript(_SCHEMA)
        if version != SCHEMA_VERSION:  # a write; skipped when current, so a full disk opens
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute(f"PRAGMA synchronous={_OPEN_SYNC}")
    except sqlite3.Error as err:
        conn.close()
        raise OutboxError(f"outbox {path}: not a usable database: {err}; {fix}") from err
    except OutboxError:
        conn.close()
        raise
    return conn


def _payload_id(payload: bytes) -> str:
    """The ``id`` inside a JSON payload (what subscribers deduplicate on), else a new one."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        doc = None
    mid = doc.get("id") if isinstance(doc, dict) else None
    return mid if isinstance(mid, str) and mid else uuid.uuid4().hex


def _connect_memory() -> sqlite3.Connection:
    """The schema in memory, for an agent whose state disk refuses even to open the outbox."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.executescript(_SCHEMA)
    return conn


class Outbox:
    """SQLite (WAL) queue; see the module docstring for guarantees. Open with :meth:`open`."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        telemetry_max_rows: int = DEFAULT_TELEMETRY_MAX_ROWS,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        """Wrap a connection made by :meth:`open` (which also owns the schema); no I/O."""
        self.path = path
        self.telemetry_max_rows = _check_telemetry_max_rows(telemetry_max_rows)
        self.max_payload_bytes = max_payload_bytes
        self._lock = threading.Lock()
        self._sync_mode = _OPEN_SYNC
        self._put_listeners: list[Callable[[], None]] = []
        self._conn: sqlite3.Connection | None = conn
        self._spill = Spill(path)

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        telemetry_max_rows: int = DEFAULT_TELEMETRY_MAX_ROWS,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> Outbox:
        """Open (or create) the outbox at ``path``. Raises :class:`OutboxError` with the fix
        for an unusable file (no permission, not SQLite, written by a newer agent)."""
        _check_telemetry_max_rows(telemetry_max_rows)
        file = Path(path)
        problem = None
        try:
            conn = _connect(file)
        except OutboxError as err:
            problem = storage_problem(err.__cause__) if err.__cause__ else None
            if problem is None:
                raise
            # The state disk refuses even to open the outbox (full, read-only): serve from
            # memory rather than exit; nothing is durable until the agent restarts with space.
            log.error("%s; keeping messages in memory until restart", err)
            conn = _connect_memory()
        box = cls(
            file, conn, telemetry_max_rows=telemetry_max_rows, max_payload_bytes=max_payload_bytes
        )
        if problem is not None:
            box._spill.note(f"cannot open ({problem}); messages are kept in memory only")
            box._spill.permanent = True
        return box

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close. Idempotent."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            if self._spill.held:
                log.error(
                    "outbox %s: %d message(s) held in memory are lost at stop: the disk "
                    "never took them (%s)",
                    self.path,
                    len(self._spill.held),
                    self._spill.trouble.error if self._spill.trouble else "unknown",
                )
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # the WAL is replayed on the next open; nothing is lost
            finally:
                conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxClosedError(f"outbox {self.path}: used after close()")
        return self._conn

    def _set_sync(self, conn: sqlite3.Connection, mode: str) -> None:
        # A per-connection setting that applies to the next commits; cheap, no I/O.
        if self._sync_mode != mode:
            conn.execute(f"PRAGMA synchronous={mode}")
            self._sync_mode = mode

    @staticmethod
    def _bump(conn: sqlite3.Connection, name: str, by: int) -> None:
        conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def _validate(self, topic: str, payload: bytes, kind: str, qos: int, retain: bool) -> None:
        if kind not in KINDS:
            raise OutboxError(f"kind = {kind!r}: must be one of {list(KINDS)}")
        if isinstance(qos, bool) or qos not in (0, 1, 2):
            raise OutboxError(f"qos = {qos!r}: must be 0, 1 or 2")
        if kind != "telemetry" and qos == 0:
            raise OutboxError(
                f"qos = 0 for kind {kind!r}: alarms and events need QoS >= 1 so that they are "
                "deleted only after the broker acknowledged them; fix: use qos=1"
            )
        if not isinstance(retain, bool):
            raise OutboxError(f"retain = {retain!r}: must be a bool")
        if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic:
            raise OutboxError(f"topic = {topic!r}: must be a non-empty topic without wildcards")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise OutboxError(f"payload of type {type(payload).__name__}: must be bytes")
        if len(payload) > self.max_payload_bytes:
            raise OutboxError(
                f"payload of {len(payload)} bytes on {topic!r}: larger than "
                f"max_payload_bytes = {self.max_payload_bytes}"
            )

    # -- public API ---------------------------------------------------------------------

    def put(
        self,
        topic: str,
        payload: bytes,
        *,
        kind: Kind,
        qos: int = 1,
        retain: bool = False,
        msg_id: str | None = None,
    ) -> str:
        """Queue one message and return its id. Durable once this returns (see module doc)."""
        return self.put_many([NewMessage(topic, payload, kind, qos, retain, msg_id)])[0]

    def put_many(self, messages: Sequence[NewMessage]) -> list[str]:
        """Queue several messages in **one** transaction: after a kill, either all of them
        are queued or none (an alarm and its retained state never disagree)."""
        rows = [self._row(m) for m in messages]
        with self._lock:
            conn = self._connection()
            self._retry(conn)
            if self._spill.held or self._spill.trouble is not None:
                self._hold(rows)  # behind what is already held, in order
            else:
                self._write(conn, rows)
            listeners = list(self._put_listeners)
        for listener in listeners:
            listener()
        return [r.id for r in rows]

    def _row(self, m: NewMessage) -> HeldMessage:
        self._validate(m.topic, m.payload, m.kind, m.qos, m.retain)
        mid = uuid.uuid4().hex if m.msg_id is None else m.msg_id
        if not isinstance(mid, str) or not mid:
            raise OutboxError(f"msg_id = {mid!r}: must be a non-empty string")
        return HeldMessage(mid, m.kind, m.topic, bytes(m.payload), m.qos, m.retain, time.time())

    def _write(self, conn: sqlite3.Connection, rows: Sequence[HeldMessage]) -> None:
        try:
            durable = any(r.kind != "telemetry" for r in rows)
            self._set_sync(conn, "FULL" if durable else "NORMAL")
            with _transaction(conn):
                self._insert(conn, rows)
        except sqlite3.IntegrityError as err:
            ids = ", ".join(repr(r.id) for r in rows)
            raise OutboxDuplicateError(f"outbox: message id {ids} already queued") from err
        except sqlite3.Error as err:
            problem = storage_problem(err)
            if problem is None:
                raise OutboxError(f"outbox {self.path}: put failed: {err}") from err
            self._refused(problem)
            self._hold(rows)

    def _insert(self, conn: sqlite3.Connection, rows: Sequence[HeldMessage], *, replay=False):
        verb = "INSERT OR IGNORE" if replay else "INSERT"
        for r in rows:
            conn.execute(
                f"{verb} INTO messages (id, kind, priority, topic, payload, qos, retain, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (r.id, r.kind, _PRIORITY[r.kind], r.topic, r.payload, r.qos, int(r.retain),
                 r.created),
            )  # fmt: skip
            if r.retain:
                conn.execute(
                    "INSERT OR REPLACE INTO retained (topic, payload, updated) VALUES (?, ?, ?)",
                    (r.topic, r.payload, r.created),
                )
        self._bump(conn, "enqueued_total", len(rows))
        if any(r.kind == "telemetry" for r in rows):
            self._trim_telemetry(conn)

    def _hold(self, rows: Sequence[HeldMessage]) -> None:
        for r in rows:
            self._spill.hold(r)

    def _retry(self, conn: sqlite3.Connection) -> None:
        """While the disk refuses writes: at most every second, try to write what is held and
        delete what was delivered; on success the outbox is back to normal."""
        if not self._spill.due():
            return
        self._spill.tried()
        held = list(self._spill.held.values())
        try:
            self._set_sync(conn, "FULL")
            with _transaction(conn):
                self._insert(conn, held, replay=True)
                for msg_id in self._spill.tombstones:
                    conn.execute("DELETE FROM messages WHERE id = ?", (msg_id,))
        except sqlite3.Error as err:
            problem = storage_problem(err)
            if problem is None:
                raise OutboxError(f"outbox {self.path}: retry failed: {err}") from err
            self._refused(problem)
            return
        was = self._spill.trouble
        self._spill.held.clear()
        self._spill.tombstones.clear()
        free = free_bytes(self.path.parent)
        if free is not None and free < RECOVERY_FREE_BYTES:
            return  # written, but the disk is still (nearly) full: stay in the state
        self._spill.recovered()
        if was is not None:
            log.warning(
                "outbox %s: the disk takes writes again; %d held message(s) written",
                self.path,
                len(held),
            )

    def _refused(self, problem: str) -> None:
        """Record a refused write; the first one of an episode is logged."""
        if self._spill.note(problem):
            log.error(
                "outbox %s: the disk refuses writes (%s); alarms are held in memory and "
                "written when it takes them again, telemetry is dropped",
                self.path,
                problem,
            )

    def add_put_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every committed put (on the putting thread, outside the
        lock). The MQTT link uses it to start draining at once instead of at its next poll;
        keep listeners cheap and non-blocking (e.g. ``threading.Event.set``)."""
        with self._lock:
            self._put_listeners.append(listener)

    def remove_put_listener(self, listener: Callable[[], None]) -> None:
        with self._lock:
            if listener in self._put_listeners:
                self._put_listeners.remove(listener)

    def put_json(
        self,
        topic: str,
        obj: Mapping[str, Any],
        *,
        kind: Kind,
        qos: int = 1,
        retain: bool = False,
    ) -> str:
        """Serialize ``obj`` to compact JSON and queue it; its ``"id"`` becomes the message id.

        If ``obj`` has no ``"id"``, a new one is generated and written into the payload, so the
        id a subscriber sees is always the outbox id.
        """
        return self.put_many([json_message(topic, obj, kind=kind, qos=qos, retain=retain)])[0]

    def _trim_telemetry(self, conn: sqlite3.Connection) -> None:
        count = conn.execute("SELECT COUNT(*) FROM messages WHERE kind = 'telemetry'").fetchone()[0]
        excess = count - self.telemetry_max_rows
        if excess > 0:
            conn.execute(
                "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages "
                "WHERE kind = 'telemetry' ORDER BY seq LIMIT ?)",
                (excess,),
            )
            self._bump(conn, "telemetry_dropped", excess)

    def next_batch(self, limit: int, exclude_ids: Collection[str] = ()) -> list[OutboxMessage]:
        """Up to ``limit`` messages in drain order, skipping ``exclude_ids`` (already in flight).

        Does not remove anything: a message leaves the outbox only through :meth:`ack`. While
        the disk refuses writes, messages held in memory come after the stored alarms and
        before telemetry, and delivered-but-undeleted rows are never offered again.
        """
        if limit <= 0:
            return []
        excluded = set(exclude_ids)
        with self._lock:
            conn = self._connection()
            self._retry(conn)
            skip = excluded | set(self._spill.tombstones)
            try:
                rows = conn.execute(
                    "SELECT seq, id, kind, topic, payload, qos, retain, created FROM messages "
                    "ORDER BY priority, seq LIMIT ?",
                    (limit + len(skip),),
                ).fetchall()
            except sqlite3.Error as err:
                raise OutboxError(f"outbox {self.path}: read failed: {err}") from err
            held = [
                OutboxMessage(-1, m.id, m.kind, m.topic, m.payload, m.qos, m.retain, m.created)  # type: ignore[arg-type]
                for m in self._spill.held.values()
                if m.id not in excluded
            ]
        stored = [
            OutboxMessage(seq, mid, kind, topic, bytes(payload), qos, bool(retain), created)
            for seq, mid, kind, topic, payload, qos, retain, created in rows
            if mid not in skip
        ]
        urgent = [m for m in stored if m.kind != "telemetry"]
        telemetry = [m for m in stored if m.kind == "telemetry"]
        return (urgent + held + telemetry)[:limit]

    def ack(self, msg_id: str) -> bool:
        """Delete a delivered message. Returns False if it was not queued (already acked or
        dropped). Safe to call from the MQTT network thread."""
        with self._lock:
            conn = self._connection()
            if self._spill.take_delivered(msg_id):
                return True
            try:
                self._set_sync(conn, "NORMAL")
                with _transaction(conn):
                    deleted = conn.execute("DELETE FROM messages WHERE id = ?", (msg_id,)).rowcount
                    if deleted:
                        self._bump(conn, "acked_total", deleted)
            except sqlite3.Error as err:
                problem = storage_problem(err)
                if problem is None:
                    raise OutboxError(
                        f"outbox {self.path}: ack of {msg_id!r} failed: {err}"
                    ) from err
                # Delivered but not deletable: never offer it again, delete it later.
                self._refused(problem)
                self._spill.tombstones.add(msg_id)
                return True
        return deleted > 0

    def last_retained(self, topic: str) -> bytes | None:
        """The payload last ``put`` with ``retain`` on ``topic`` (delivered or not), or None."""
        with self._lock:
            conn = self._connection()
            held = self._spill.last_retained(topic)
            if held is not None:
                return held
            try:
                row = conn.execute(
                    "SELECT payload FROM retained WHERE topic = ?", (topic,)
                ).fetchone()
            except sqlite3.Error as err:
                raise OutboxError(f"outbox {self.path}: read failed: {err}") from err
        return None if row is None else bytes(row[0])

    def requeue_retained(self) -> int:
        """Queue the last retained payload of every topic again (after a reconnect: the broker
        may have lost its retained messages). Same payload, same id — subscribers that saw it
        drop the duplicate — and a payload still queued is not queued twice. Returns how many
        were queued; never raises for a refusing disk (the spill holds them)."""
        with self._lock:
            conn = self._connection()
            try:
                rows = conn.execute("SELECT topic, payload FROM retained").fetchall()
                queued = {r[0] for r in conn.execute("SELECT id FROM messages").fetchall()}
            except sqlite3.Error as err:
                raise OutboxError(f"outbox {self.path}: read failed: {err}") from err
        messages = []
        for topic, payload in rows:
            mid = _payload_id(bytes(payload))
            if mid not in queued:
                messages.append(NewMessage(topic, bytes(payload), "event", 1, True, mid))
        if messages:
            self.put_many(messages)
        return len(messages)

    def depth(self) -> dict[str, int]:
        """Queued messages per kind (every kind present, 0 if none)."""
        with self._lock:
            conn = self._connection()
            try:
                rows = conn.execute("SELECT kind, COUNT(*) FROM messages GROUP BY kind").fetchall()
            except sqlite3.Error as err:
                raise OutboxError(f"outbox {self.path}: read failed: {err}") from err
        depth = dict.fromkeys(KINDS, 0)
        depth.update(rows)
        return depth

    def stats(self) -> OutboxStats:
        """Depths and persistent counters, for the status payload and logs."""
        depth = self.depth()
        with self._lock:
            conn = self._connection()
            try:
                counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
                oldest = conn.execute("SELECT MIN(created) FROM messages").fetchone()[0]
            except sqlite3.Error as err:
                raise OutboxError(f"outbox {self.path}: read failed: {err}") from err
            spill = self._spill
            held = {k: sum(1 for m in spill.held.values() if m.kind == k) for k in KINDS}
            storage = spill.trouble
            # delivered rows still on disk are not undelivered messages
            gone = len(spill.tombstones)
            counts = (spill.telemetry_dropped, spill.held_dropped, spill.acked_from_memory)
        return OutboxStats(
            alarm=depth["alarm"] + held["alarm"],
            event=max(0, depth["event"] + held["event"] - gone),
            telemetry=depth["telemetry"],
            telemetry_dropped=counters.get("telemetry_dropped", 0) + counts[0],
            enqueued_total=counters.get("enqueued_total", 0),
            acked_total=counters.get("acked_total", 0) + counts[2],
            oldest_created=oldest,
            held=sum(held.values()),
            held_dropped=counts[1],
            storage=storage,
        )
