"""Counts of what the OTA intake ignored, by kind, with one log line per kind.

Anyone who can publish on the broker can send commands and chunks; logging each would let
them fill the disk and bury real messages. The first refusal of a kind is logged (with its
detail), later ones only counted; the totals are logged at shutdown and available from
``OtaManager.refusals()``.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

log = logging.getLogger("agent.ota")
MAX_DETAIL = 200


class Refusals:
    """Thread-safe: the MQTT thread and the worker both count here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def note(self, kind: str, detail: str) -> None:
        with self._lock:
            self._counts[kind] += 1
            first = self._counts[kind] == 1
        if first:  # the detail may hold a stranger's bytes: one printable line only
            text = "".join(ch if ch.isprintable() else "?" for ch in detail[:MAX_DETAIL])
            log.warning(
                "ota: ignored (%s): %s; further ones of this kind are only counted", kind, text
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def summary(self) -> str:
        counts = self.counts()
        return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "none"
