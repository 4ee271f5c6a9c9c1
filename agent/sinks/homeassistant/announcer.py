"""Keeps the broker's retained Home Assistant discovery configs equal to the running config.

Configs go through the outbox as retained QoS 1 events, like ``meta`` and ``alarm/active``: a
config queued while the broker is away is delivered later, and every reconnect re-sends the
last retained payload of each topic (a broker restarted without persistence forgot them).

A config whose retained payload is unchanged is not queued again, so a restart with the same
robots sends nothing and Home Assistant does not reconfigure its entities. The topics
announced are recorded in ``<state_dir>/homeassistant-discovery.json``; at the next start
(also after a SIGHUP reload) a recorded topic that is no longer configured — a robot removed,
the prefix changed, discovery disabled — gets an empty retained payload, which makes Home
Assistant delete the entity and the broker forget the config.

Usage::

    sync_discovery(config.homeassistant, identity, topics, ("r1",), outbox, state_dir)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.core.atomic import write_atomic
from agent.sinks.homeassistant.discovery import DiscoveryScope, discovery_configs
from agent.sinks.homeassistant.settings import HomeAssistantSettings
from agent.sinks.mqtt.payloads import AgentIdentity
from agent.sinks.outbox import NewMessage, Outbox, json_message
from agent.sinks.topics import Topics

log = logging.getLogger(__name__)

RECORD_NAME = "homeassistant-discovery.json"


@dataclass(frozen=True, slots=True)
class Announced:
    """What one :meth:`DiscoveryAnnouncer.announce` queued."""

    published: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: int = 0


def _same_config(retained: bytes | None, config: Mapping[str, Any]) -> bool:
    """Whether ``retained`` (as the outbox kept it, with its message id) holds ``config``."""
    if not retained:
        return False
    try:
        doc = json.loads(retained)
    except ValueError:
        return False
    return isinstance(doc, dict) and {k: v for k, v in doc.items() if k != "id"} == config


class DiscoveryAnnouncer:
    """Queues the changed configs and the removals; ``record`` lists what was announced."""

    def __init__(self, outbox: Outbox, record: Path) -> None:
        self._outbox = outbox
        self._record = record

    def recorded(self) -> set[str]:
        """The topics announced before; an unreadable record counts as none (logged)."""
        try:
            doc = json.loads(self._record.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as err:
            log.warning("homeassistant: %s unreadable (%s); stale configs stay", self._record, err)
            return set()
        topics = doc.get("topics") if isinstance(doc, dict) else None
        if not isinstance(topics, list):
            log.warning("homeassistant: %s has no topic list; stale configs stay", self._record)
            return set()
        return {t for t in topics if isinstance(t, str) and t}

    def announce(self, configs: Mapping[str, Mapping[str, Any]]) -> Announced:
        previous = self.recorded()
        messages: list[NewMessage] = []
        unchanged = 0
        for topic, config in configs.items():
            if _same_config(self._outbox.last_retained(topic), config):
                unchanged += 1
                continue
            messages.append(json_message(topic, config, kind="event", qos=1, retain=True))
        stale = sorted(previous - set(configs))
        messages += [NewMessage(t, b"", "event", qos=1, retain=True) for t in stale]
        if messages:
            self._outbox.put_many(messages)  # one transaction: configs and removals together
        self._write_record(sorted(configs), changed=set(configs) != previous)
        return Announced(
            published=tuple(m.topic for m in messages if m.payload),
            removed=tuple(stale),
            unchanged=unchanged,
        )

    def _write_record(self, topics: Sequence[str], *, changed: bool) -> None:
        # Written after the outbox took the removals: a kill in between repeats them, never
        # forgets them.
        if not changed:
            return
        try:
            if topics:
                data = json.dumps({"topics": list(topics)}, indent=1).encode()
                write_atomic(self._record, data)
            else:
                self._record.unlink(missing_ok=True)
        except OSError as err:
            log.error(
                "homeassistant: cannot update %s (%s); a robot removed later may leave its "
                "entities in Home Assistant",
                self._record,
                err,
            )


def sync_discovery(
    settings: HomeAssistantSettings,
    identity: AgentIdentity,
    topics: Topics,
    robots: tuple[str, ...],
    outbox: Outbox,
    state_dir: Path,
) -> Announced:
    """Announce the configs of ``robots`` (or, with discovery disabled, remove what an earlier
    run announced)."""
    record = Path(state_dir) / RECORD_NAME
    if not settings.enabled and not record.exists():
        return Announced()
    configs: dict[str, dict[str, Any]] = {}
    if settings.enabled:
        scope = DiscoveryScope(settings.discovery_prefix, topics, identity.agent_version, robots)
        configs = discovery_configs(scope)
    announced = DiscoveryAnnouncer(outbox, record).announce(configs)
    if announced.published or announced.removed:
        log.info(
            "homeassistant: %d discovery config(s) published, %d removed, %d unchanged",
            len(announced.published),
            len(announced.removed),
            announced.unchanged,
        )
    return announced
