"""The ``[ota]`` table: what over-the-air updates accept, and how they are judged."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.core.errors import ConfigError
from agent.core.tables import Table, identifier, in_range, str_list

DEFAULT_MAX_BUNDLE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class OtaSettings:
    """Over-the-air updates (agent/ota/, docs/architecture.md). Rates: fractions of windows."""

    enabled: bool = True
    groups: tuple[str, ...] = ()
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
    need_interval_s: float = 2.0  # ask for missing chunks after this long without one
    transfer_timeout_s: float = 300.0  # give up when no chunk arrived for this long
    max_normal_alarm_rate: float = 0.05  # gate: candidate on recent normal windows
    min_recent_windows: int = 32  # gate: wait for this many recent normal windows …
    gate_wait_s: float = 30.0  # … at most this long, then gate on what there is
    probation_windows: int = 200
    probation_max_alarm_rate: float = 0.05
    probation_max_latency_s: float = 5.0
    probation_max_s: float = 600.0  # commit a clean probation that saw too few windows
    max_pending: int = 4  # signed commands waiting behind the active one; more are refused
    url_timeout_s: float = 120.0  # a url download must finish within this
    verify_timeout_s: float = 300.0  # verification (load, canary, gate) must finish within this
    file_url_root: Path | None = None  # file:// urls only below this directory; None: none

    @classmethod
    def from_table(cls, t: Table, base_dir: Path | None = None) -> OtaSettings:
        """Read and validate ``[ota]``; unknown keys are refused. ``file_url_root`` is made
        absolute against ``base_dir``; without one it must be absolute already."""
        groups = str_list(t, "groups", 'e.g. groups = ["hall3", "kr16"] (MQTT topic levels)')
        for group in groups:
            if identifier(group):
                raise ConfigError(f"{t.key('groups')}: {group!r}: {identifier(group)}")
        settings = cls(
            enabled=t.get("enabled", bool, True),
            groups=groups,
            max_bundle_bytes=t.get(
                "max_bundle_bytes", int, DEFAULT_MAX_BUNDLE_BYTES, check=in_range(1024, 1 << 31)
            ),
            need_interval_s=t.get("need_interval_s", float, 2.0, check=in_range(0.1, 600)),
            transfer_timeout_s=t.get("transfer_timeout_s", float, 300.0, check=in_range(1, 86400)),
            max_normal_alarm_rate=t.get(
                "max_normal_alarm_rate", float, 0.05, check=in_range(0.0, 1.0)
            ),
            min_recent_windows=t.get("min_recent_windows", int, 32, check=in_range(0, 100_000)),
            gate_wait_s=t.get("gate_wait_s", float, 30.0, check=in_range(0, 3600)),
            probation_windows=t.get("probation_windows", int, 200, check=in_range(1, 1_000_000)),
            probation_max_alarm_rate=t.get(
                "probation_max_alarm_rate", float, 0.05, check=in_range(0.0, 1.0)
            ),
            probation_max_latency_s=t.get(
                "probation_max_latency_s", float, 5.0, check=in_range(0.001, 3600)
            ),
            probation_max_s=t.get("probation_max_s", float, 600.0, check=in_range(1, 30 * 86400)),
            max_pending=t.get("max_pending", int, 4, check=in_range(1, 64)),
            url_timeout_s=t.get("url_timeout_s", float, 120.0, check=in_range(1, 86400)),
            verify_timeout_s=t.get("verify_timeout_s", float, 300.0, check=in_range(1, 86400)),
            file_url_root=_file_url_root(t, base_dir),
        )
        t.done()
        return settings


def _file_url_root(t: Table, base_dir: Path | None) -> Path | None:
    fix = 'e.g. file_url_root = "/var/lib/rapp-agent/incoming" (a directory of bundles)'
    root = t.path("file_url_root", base_dir, fix=fix)
    if root is not None and not root.is_absolute():
        raise ConfigError(f"{t.key('file_url_root')} = {str(root)!r}: must be absolute; {fix}")
    return root
