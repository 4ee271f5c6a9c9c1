"""The edge node's birth/death sequence number (bdSeq), kept across restarts.

Every MQTT connect registers an NDEATH will carrying a bdSeq, and the NBIRTH of that
connection repeats it, so a host can tell which birth a death belongs to. The number counts
connects 0, 1, …, 255, 0, … and is stored in the state directory: after a power loss the
broker may deliver the old connection's NDEATH only after the new connection's NBIRTH, and a
host must not take it for the death of the new one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent.core.atomic import write_atomic

log = logging.getLogger(__name__)
BDSEQ_MODULO = 256
FILE_NAME = "sparkplug-bdseq"


def read_bdseq(path: Path) -> int:
    """The bdSeq for the next connect; 0 when none was stored or the file is unusable."""
    try:
        value = int(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        return 0
    except (OSError, ValueError) as err:
        log.warning("sparkplug: %s unreadable (%s); bdSeq starts at 0", path, err)
        return 0
    return value % BDSEQ_MODULO


def store_bdseq(path: Path, value: int) -> None:
    """Remember the bdSeq of the next connect; a failing disk is logged, not raised (the
    session goes on, only the restart-after-power-loss case loses its protection)."""
    try:
        write_atomic(path, f"{value % BDSEQ_MODULO}\n".encode("ascii"))
    except OSError as err:
        log.error("sparkplug: cannot store bdSeq in %s: %s", path, err)
