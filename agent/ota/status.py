"""Report every OTA step: a retained ``ota/status`` message and one log line each.

Messages go through the outbox as ``event`` rows (QoS 1, retained, never dropped), so a step
reported while the broker is down is delivered after reconnecting, in order; the retained
message always shows a device's latest step (received → downloading → verifying → staged →
active → committed | rejected(reason) | rolled_back(reason)), with the transfer and bundle id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from agent.pipeline.alarms import ModelRef
from agent.sinks.mqtt.payloads import OtaState, build_ota_status
from agent.sinks.outbox import Outbox
from agent.sinks.topics import Topics

log = logging.getLogger("agent.ota")
FINAL_STATES = ("committed", "rejected", "rolled_back")


class OtaReporter:
    """Publishes OTA steps for one device (no MQTT configured: log lines only)."""

    def __init__(self, device: str, topics: Topics, outbox: Outbox | None) -> None:
        self.device = device
        self.topics = topics
        self.outbox = outbox
        self.last: dict[str, Any] | None = None

    def report(
        self,
        state: OtaState,
        transfer_id: str,
        *,
        robot: str | None = None,
        bundle: ModelRef | None = None,
        previous: ModelRef | None = None,
        received_bytes: int | None = None,
        total_bytes: int | None = None,
        reason: str | None = None,
        warnings: Sequence[str] = (),
        replaces: Sequence[ModelRef] = (),
    ) -> dict[str, Any]:
        payload = build_ota_status(
            self.device,
            state,
            transfer_id,
            robot=robot,
            bundle=bundle,
            previous=previous,
            received_bytes=received_bytes,
            total_bytes=total_bytes,
            reason=reason,
            warnings=warnings,
            replaces=replaces,
        )
        for warning in warnings:
            log.warning("ota %s: WARNING %s", transfer_id, warning)
        what = f"{bundle.bundle_id} v{bundle.version}" if bundle else "bundle"
        where = f" for {robot}" if robot else ""
        extra = f": {reason}" if reason else ""
        if received_bytes is not None:
            extra += f" ({received_bytes}/{total_bytes} bytes)"
        level = logging.WARNING if state in ("rejected", "rolled_back") else logging.INFO
        log.log(level, "ota %s: %s %s%s%s", transfer_id, state, what, where, extra)
        if self.outbox is not None:
            self.outbox.put_json(self.topics.ota_status, payload, kind="event", qos=1, retain=True)
        self.last = payload
        return payload
