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

    box = Outbox(state_dir / "outbox.sqlite3", telemetry_max_rows=10_000)
    msg_id = box.put_json(topics.alarm("r1"), payload, kind="alarm", qos=1)
    for msg in box.next_batch(16): ...  # publish; on PUBACK: box.ack(msg.id)
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

Kind = Literal["alarm", "event", "telemetry"]
KINDS: tuple[str, ...] = get_args(Kind)
# Lower drains first; within a priority, insertion order.
_PRIORITY = {"alarm": 0, "event": 0, "telemetry": 1}
SCHEMA_VERSION = 1
DEFAULT_TELEMETRY_MAX_ROWS = 10_000
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20

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


class OutboxError(Exception):
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
class OutboxStats:
    """Depth per kind, and counters that persist across restarts."""

    alarm: int
    event: int
    telemetry: int
    telemetry_dropped: int
    enqueued_total: int
    acked_total: int
    oldest_created: float | None

    @property
    def depth(self) -> int:
        return self.alarm + self.event + self.telemetry


class Outbox:
    """SQLite (WAL) queue; see the module docstring for guarantees."""

    def __init__(
        self,
        path: Path | str,
        *,
        telemetry_max_rows: int = DEFAULT_TELEMETRY_MAX_ROWS,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        if isinstance(telemetry_max_rows, bool) or not isinstance(telemetry_max_rows, int):
            raise OutboxError(f"telemetry_max_rows = {telemetry_max_rows!r}: must be an integer")
        if telemetry_max_rows < 1:
            raise OutboxError(
                f"telemetry_max_rows = {telemetry_max_rows!r}: must be >= 1; fix: e.g. 10000"
            )
        self.path = Path(path)
        self.telemetry_max_rows = telemetry_max_rows
        self.max_payload_bytes = max_payload_bytes
        self._lock = threading.Lock()
        self._sync_mode = ""
        self._put_listeners: list[Callable[[], None]] = []
        self._conn: sqlite3.Connection | None = self._open()

    # -- setup --------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        fix = (
            f"fix: check permissions/space of {self.path.parent}, or move {self.path} aside "
            "(its undelivered messages are then lost) and restart"
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing is left in an
            # implicit transaction between calls.
            conn = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as err:
            raise OutboxError(f"outbox {self.path}: cannot open: {err}; {fix}") from err
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(
                    f"outbox {self.path}: journal_mode is {mode!r}, WAL is required; "
                    "fix: put the state directory on a local filesystem"
                )
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxError(
                    f"outbox {self.path}: schema version {version} is newer than this agent "
                    f"({SCHEMA_VERSION}); fix: upgrade the agent or move the file aside"
                )
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("PRAGMA synchronous=FULL")
            self._sync_mode = "FULL"
        except sqlite3.Error as err:
            conn.close()
            raise OutboxError(f"outbox {self.path}: not a usable database: {err}; {fix}") from err
        except OutboxError:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close. Idempotent."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
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
        self._validate(topic, payload, kind, qos, retain)
        mid = uuid.uuid4().hex if msg_id is None else msg_id
        if not isinstance(mid, str) or not mid:
            raise OutboxError(f"msg_id = {mid!r}: must be a non-empty string")
        with self._lock:
            conn = self._connection()
            try:
                self._set_sync(conn, "NORMAL" if kind == "telemetry" else "FULL")
                with _transaction(conn):
                    conn.execute(
                        "INSERT INTO messages "
                        "(id, kind, priority, topic, payload, qos, retain, created) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            mid,
                            kind,
                            _PRIORITY[kind],
                            topic,
                            bytes(payload),
                            qos,
                            int(retain),
                            time.time(),
                        ),
                    )
                    self._bump(conn, "enqueued_total", 1)
                    if retain:
                        conn.execute(
                            "INSERT OR REPLACE INTO retained (topic, payload, updated) "
                            "VALUES (?, ?, ?)",
                            (topic, bytes(payload), time.time()),
                        )
                    if kind == "telemetry":
                        self._trim_telemetry(conn)
            except sqlite3.IntegrityError as err:
                raise OutboxDuplicateError(f"outbox: message id {mid!r} already queued") from err
            except sqlite3.Error as err:
                raise OutboxError(f"outbox {self.path}: put failed: {err}") from err
            listeners = list(self._put_listeners)
        for listener in listeners:
            listener()
        return mid

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
        mid = obj.get("id") or uuid.uuid4().hex
        try:
            payload = json.dumps(
                {**obj, "id": mid}, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode()
        except (TypeError, ValueError) as err:
            raise OutboxError(f"payload for {topic!r} is not serializable as JSON: {err}") from err
        return self.put(topic, payload, kind=kind, qos=qos, retain=retain, msg_id=mid)

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

        Does not remove anything: a message leaves the outbox only through :meth:`ack`.
        """
        if limit <= 0:
            return []
        excluded = set(exclude_ids)
        with self._lock:
            conn = self._connection()
            try:
                rows = conn.execute(
                    "SELECT seq, id, kind, topic, payload, qos, retain, created FROM messages "
                    "ORDER BY priority, seq LIMIT ?",
                    (limit + len(excluded),),
                ).fetchall()
            except sqlite3.Error as err:
                raise OutboxError(f"outbox {self.path}: read failed: {err}") from err
        batch = [
            OutboxMessage(seq, mid, kind, topic, bytes(payload), qos, bool(retain), created)
            for seq, mid, kind, topic, payload, qos, retain, created in rows
            if mid not in excluded
        ]
        return batch[:limit]

    def ack(self, msg_id: str) -> bool:
        """Delete a delivered message. Returns False if it was not queued (already acked or
        dropped). Safe to call from the MQTT network thread."""
        with self._lock:
            conn = self._connection()
            try:
                self._set_sync(conn, "NORMAL")
                with _transaction(conn):
                    deleted = conn.execute("DELETE FROM messages WHERE id = ?", (msg_id,)).rowcount
                    if deleted:
                        self._bump(conn, "acked_total", deleted)
            except sqlite3.Error as err:
                raise OutboxError(f"outbox {self.path}: ack of {msg_id!r} failed: {err}") from err
        return deleted > 0

    def last_retained(self, topic: str) -> bytes | None:
        """The payload last ``put`` with ``retain`` on ``topic`` (delivered or not), or None."""
        with self._lock:
            conn = self._connection()
            try:
                row = conn.execute(
                    "SELECT payload FROM retained WHERE topic = ?", (topic,)
                ).fetchone()
            except sqlite3.Error as err:
                raise OutboxError(f"outbox {self.path}: read failed: {err}") from err
        return None if row is None else bytes(row[0])

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
        return OutboxStats(
            alarm=depth["alarm"],
            event=depth["event"],
            telemetry=depth["telemetry"],
            telemetry_dropped=counters.get("telemetry_dropped", 0),
            enqueued_total=counters.get("enqueued_total", 0),
            acked_total=counters.get("acked_total", 0),
            oldest_created=oldest,
        )
