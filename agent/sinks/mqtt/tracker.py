"""Bookkeeping of the publishes the MQTT link handed to paho, until paho reports them done.

The tracker knows, per paho message id (mid), which outbox row a publish carries, and deletes
that row (``ack``) only when paho's ``on_publish`` reports the broker's PUBACK (for QoS 0:
that it was written to the socket). It also keeps what the drain needs to decide what to send
next — whether the link is connected, the broker's Receive Maximum, which rows are in flight
and which are held back after a rejection — and the counters shown in :class:`LinkStats`.

Races it absorbs:

- ``on_publish`` may run (on paho's network thread) before ``publish()`` returned the mid to
  the drain thread; the reason code is kept as an *early* completion and applied on
  :meth:`PublishTracker.track`.
- A QoS 0 publish dies with its connection (paho never reports it); each connection has a
  *generation*, and QoS 0 publishes of an older generation are forgotten at disconnect.

Lock order: paho's internal mutex -> the tracker lock -> the outbox lock (``ack`` runs under
the tracker lock). Nothing calls into paho while holding the tracker lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from agent.sinks.outbox import OutboxError

log = logging.getLogger(__name__)

# Publishes that the broker rejected (MQTT 5 PUBACK reason >= 0x80, e.g. "not authorized")
# are not deleted; they are retried after this long instead of blocking the queue.
REJECTED_RETRY_S = 30.0
# Without a Receive Maximum from the broker (MQTT 3.1.1, or not sent), the MQTT 5 default.
DEFAULT_RECEIVE_MAX = 65535
# Slots of the broker's Receive Maximum kept free for status publishes.
STATUS_RESERVE = 2


@dataclass(frozen=True, slots=True)
class LinkStats:
    """Connection state and counters since :meth:`MqttLink.start`."""

    connected: bool
    connects: int
    disconnects: int
    published: int
    acked: int
    rejected: int
    in_flight: int
    held: int
    last_error: str | None


@dataclass(slots=True)
class Pending:
    """A publish handed to paho and not yet confirmed by on_publish."""

    msg_id: str | None  # outbox id; None for direct (status) publishes
    qos: int
    generation: int  # connection generation at publish time (QoS 0 dies with its connection)
    done: threading.Event = field(default_factory=threading.Event)
    failed: bool = False


@dataclass(slots=True)
class _Counters:
    connects: int = 0
    disconnects: int = 0
    published: int = 0
    acked: int = 0
    rejected: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class DrainWindow:
    """What the drain may send now: ``room`` more rows, none of ``exclude``."""

    room: int
    exclude: frozenset[str]


class PublishTracker:
    """Pending mids, early completions, held rows, the connection generation and counters."""

    def __init__(
        self,
        ack: Callable[[str], object],
        *,
        rejected_retry_s: float = REJECTED_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ack = ack  # Outbox.ack: deletes a delivered row
        self._rejected_retry_s = rejected_retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[int, Pending] = {}
        self._early: dict[int, ReasonCode | None] = {}
        self._held: dict[str, float] = {}  # msg_id -> clock time it may be retried
        self._generation = 0
        self._connected = False
        self._receive_max = DEFAULT_RECEIVE_MAX
        self._counters = _Counters()

    # -- connection ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    def on_connected(self, receive_max: int | None) -> None:
        with self._lock:
            self._connected = True
            self._counters.connects += 1
            self._receive_max = (
                max(1, receive_max - STATUS_RESERVE) if receive_max else DEFAULT_RECEIVE_MAX
            )

    def on_disconnected(self, reason: object, *, closing: bool) -> bool:
        """Record a lost (or refused) connection; True if it had been connected."""
        with self._lock:
            was_connected = self._connected
            self._connected = False
            self._generation += 1
            if was_connected:
                self._counters.disconnects += 1
            # QoS 0 packets die with the connection (paho never reports them); QoS 1 stay
            # pending: paho re-sends them after reconnecting.
            for mid in [m for m, p in self._pending.items() if p.qos == 0]:
                self._pending.pop(mid).done.set()
            if was_connected and not closing:
                # (a refused connect already recorded the more useful reason)
                self._counters.last_error = f"disconnected: {reason}"
        return was_connected

    def on_stopped(self) -> None:
        with self._lock:
            self._connected = False

    # -- publishes -------------------------------------------------------------------------

    def track(
        self, mid: int, rc: MQTTErrorCode, msg_id: str | None, qos: int, generation: int
    ) -> Pending | None:
        """Register what ``client.publish`` returned; None if paho did not take the message.

        ``generation`` is :attr:`generation` read before calling ``publish``.
        """
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            pass
        elif qos > 0 and rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            pass  # paho stored it and sends it after reconnecting; on_publish will follow
        else:
            return None  # e.g. MQTT_ERR_QUEUE_SIZE: the row stays in the outbox for later
        pending = Pending(msg_id, qos, generation)
        with self._lock:
            if msg_id is not None:
                self._counters.published += 1
            if mid in self._early:
                self._complete(pending, self._early.pop(mid))
            elif qos == 0 and generation != self._generation:
                return None  # its connection is gone and paho drops QoS 0 packets with it
            else:
                self._pending[mid] = pending
        return pending

    def on_published(self, mid: int, reason: ReasonCode | None) -> bool:
        """paho's on_publish; True if a tracked publish completed (the drain has room)."""
        with self._lock:
            pending = self._pending.pop(mid, None)
            if pending is None:
                self._early[mid] = reason
                return False
            self._complete(pending, reason)
        return True

    def _complete(self, pending: Pending, reason: ReasonCode | None) -> None:
        """Called with the lock held, once per publish."""
        if reason is not None and reason.is_failure:
            self._counters.rejected += 1
            pending.failed = True
            if pending.msg_id is not None:
                self._held[pending.msg_id] = self._clock() + self._rejected_retry_s
            self._counters.last_error = f"broker rejected a publish: {reason}"
            log.warning("mqtt: broker rejected message %s: %s", pending.msg_id, reason)
        elif pending.msg_id is not None:
            try:
                self._ack(pending.msg_id)
                self._counters.acked += 1
            except OutboxError as err:
                # The row stays and is re-sent later: a duplicate, never a loss.
                self._counters.last_error = str(err)
                log.error("mqtt: %s", err)
        pending.done.set()

    def hold_refused(self, msg_id: str, why: str) -> None:
        """A row the client refused outright (bad topic/payload): never retried."""
        with self._lock:
            self._held[msg_id] = float("inf")
            self._counters.rejected += 1
            self._counters.last_error = why

    def drain_window(self, max_inflight: int) -> DrainWindow | None:
        """None when disconnected; else how many more rows may go out, and which not."""
        with self._lock:
            if not self._connected:
                return None
            now = self._clock()
            for msg_id in [m for m, t in self._held.items() if t <= now]:
                del self._held[msg_id]
            in_flight = {p.msg_id for p in self._pending.values() if p.msg_id is not None}
            room = min(max_inflight, self._receive_max) - len(in_flight)
            return DrainWindow(room, frozenset(in_flight | self._held.keys()))

    # -- diagnostics -----------------------------------------------------------------------

    def note_error(self, text: str) -> None:
        with self._lock:
            self._counters.last_error = text

    def stats(self) -> LinkStats:
        with self._lock:
            c = self._counters
            return LinkStats(
                connected=self._connected,
                connects=c.connects,
                disconnects=c.disconnects,
                published=c.published,
                acked=c.acked,
                rejected=c.rejected,
                in_flight=sum(1 for p in self._pending.values() if p.msg_id is not None),
                held=len(self._held),
                last_error=c.last_error,
            )
