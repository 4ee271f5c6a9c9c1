"""Wall time that never steps backwards: the monotonic clock anchored to the wall clock.

Event ids (ULIDs) must sort by creation and a window must never "start" after it "ends", even
when NTP or an operator steps the wall clock by hours while the agent runs. So times the agent
stamps on its own data — ids, chunk reception, window spans — come from
:meth:`AnchoredClock.now`: the wall time read once when the clock is made, plus the monotonic
time elapsed since. A step of the wall clock moves them only after a restart; monotonic time
is slewed by NTP like the wall clock, so the two do not drift apart otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AnchoredClock:
    wall_anchor: float = field(default_factory=time.time)
    monotonic_anchor: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        """Unix seconds, non-decreasing for the life of this clock."""
        return self.wall_anchor + (time.monotonic() - self.monotonic_anchor)

    def now_ms(self) -> int:
        return int(self.now() * 1000)


# One anchor per process, taken at import; it is immutable, so sharing it is sharing a
# constant, not state.
PROCESS_CLOCK = AnchoredClock()
