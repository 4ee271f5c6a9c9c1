"""MQTT topic names of the agent: one place that knows the layout under ``rapp/v1/<device>``.

Every topic the agent publishes or subscribes to is built here, so that the layout documented
in docs/architecture.md cannot drift between the publisher, the OTA code and the tests.
Device, robot and group ids become topic levels, so they are validated: an id containing
``/`` would silently create an extra level, and ``+`` / ``#`` are wildcards that a broker
rejects in PUBLISH.

Usage::

    topics = Topics.for_device("cell7-ipc")
    topics.alarm("r1")         # 'rapp/v1/cell7-ipc/r1/alarm'
    topics.status              # 'rapp/v1/cell7-ipc/status'
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.errors import AgentInputError

DEFAULT_ROOT = "rapp/v1"
MAX_ID_LENGTH = 64

# Robot ids that would collide with the device-level topics (``<device>/status`` vs
# ``<device>/<robot>/alarm`` is unambiguous, but a robot called "ota" would make
# ``<device>/ota/...`` mean two things to a subscriber using wildcards).
RESERVED_ROBOT_IDS = frozenset({"status", "meta", "ota", "group"})


class TopicError(AgentInputError, ValueError):
    """An id or topic root cannot be used to build an MQTT topic."""


def validate_id(value: object, *, what: str = "id") -> str:
    """Return ``value`` if it is usable as one MQTT topic level, else raise :class:`TopicError`.

    Rules (stricter than MQTT itself, so ids also survive shells, file names and dashboards):
    non-empty string, at most 64 characters, no ``/``, ``+``, ``#``, no whitespace or control
    characters, and not starting with ``$`` (brokers reserve ``$``-topics such as ``$SYS``).
    """
    fix = "use letters, digits, '-', '_', '.' or ':' (e.g. 'cell7-ipc')"
    if not isinstance(value, str):
        raise TopicError(f"{what} = {value!r}: must be a string; fix: {fix}")
    if not value:
        raise TopicError(f"{what} = {value!r}: must not be empty; fix: {fix}")
    if len(value) > MAX_ID_LENGTH:
        raise TopicError(
            f"{what} = {value!r}: longer than {MAX_ID_LENGTH} characters; fix: shorten it"
        )
    bad = sorted({ch for ch in value if ch in "/+#" or ch.isspace() or not ch.isprintable()})
    if bad:
        raise TopicError(f"{what} = {value!r}: contains forbidden characters {bad!r}; fix: {fix}")
    if value.startswith("$"):
        raise TopicError(f"{what} = {value!r}: must not start with '$'; fix: {fix}")
    return value


def validate_robot_id(value: object) -> str:
    """Like :func:`validate_id`, and also refuse names reserved for device-level topics."""
    robot = validate_id(value, what="robot id")
    if robot in RESERVED_ROBOT_IDS:
        raise TopicError(
            f"robot id = {robot!r}: reserved (one of {sorted(RESERVED_ROBOT_IDS)}); "
            "fix: choose another robot name"
        )
    return robot


def validate_root(value: object) -> str:
    """Validate a topic root such as ``rapp/v1`` (levels separated by ``/``, no wildcards)."""
    if not isinstance(value, str) or not value:
        raise TopicError(f"topic root = {value!r}: must be a non-empty string; fix: 'rapp/v1'")
    if value.startswith("/") or value.endswith("/"):
        raise TopicError(
            f"topic root = {value!r}: must not start or end with '/'; fix: e.g. 'rapp/v1'"
        )
    for level in value.split("/"):
        validate_id(level, what=f"topic root level in {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names for one device. Build with :meth:`for_device` (which validates)."""

    root: str
    device: str

    @classmethod
    def for_device(cls, device: str, root: str = DEFAULT_ROOT) -> Topics:
        return cls(root=validate_root(root), device=validate_id(device, what="device id"))

    @property
    def base(self) -> str:
        """``<root>/<device>``: everything the device publishes lives below this."""
        return f"{self.root}/{self.device}"

    @property
    def status(self) -> str:
        """Retained QoS 1 health; also the last-will topic (``offline``)."""
        return f"{self.base}/status"

    @property
    def meta(self) -> str:
        """Retained description of robots, channels, units, sample rates and bundles."""
        return f"{self.base}/meta"

    @property
    def ota_cmd(self) -> str:
        """Commands to this device (subscribed by the agent)."""
        return f"{self.base}/ota/cmd"

    @property
    def ota_status(self) -> str:
        """Retained progress of the current/last OTA update."""
        return f"{self.base}/ota/status"

    @property
    def ota_need(self) -> str:
        """The device's requests for missing chunks of a transfer (see agent/ota/transfer.py)."""
        return f"{self.base}/ota/need"

    def ota_chunk(self, transfer_id: str, index: int) -> str:
        """Chunk ``index`` of a transfer: ``<root>/_transfer/<id>/<index>`` (shared by a group)."""
        return f"{self.root}/_transfer/{validate_id(transfer_id, what='transfer id')}/{index}"

    @property
    def ota_chunk_filter(self) -> str:
        """Subscription filter for the chunks of every transfer."""
        return f"{self.root}/_transfer/+/+"

    def group_ota_cmd(self, group: str) -> str:
        """OTA commands addressed to a group of devices: ``<root>/group/<group>/ota/cmd``."""
        return f"{self.root}/group/{validate_id(group, what='group id')}/ota/cmd"

    @property
    def alarm_filter(self) -> str:
        """Subscription filter for the alarm events of every robot of this device."""
        return f"{self.base}/+/alarm"

    def alarm(self, robot: str) -> str:
        """QoS 1 raise/clear events (not retained: each event is delivered once per subscriber)."""
        return f"{self.base}/{validate_robot_id(robot)}/alarm"

    def alarm_active(self, robot: str) -> str:
        """Retained current alarm state, so a subscriber that connects late sees it."""
        return f"{self.base}/{validate_robot_id(robot)}/alarm/active"

    def score(self, robot: str) -> str:
        """QoS 0 score telemetry, numbered per robot for gap detection."""
        return f"{self.base}/{validate_robot_id(robot)}/score"
