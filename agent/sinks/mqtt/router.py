"""Routes incoming MQTT messages to the handlers subscribed to matching topic filters.

Matching a filter against a topic is cheap once, but not on every message for every
subscription (paho's ``topic_matches_sub`` builds a matcher tree per call). So the router
answers from a topic -> handlers map: when no filter has a wildcard, a plain dict lookup; with
wildcards, every topic seen is matched once against all filters and the answer is cached
(bounded, oldest entry evicted first). Any change of the subscriptions rebuilds the map.

Matching follows MQTT 3.1.1 / 5 section 4.7 (the same rules as paho): ``+`` matches exactly one
level (also an empty one), a trailing ``#`` matches the parent level and everything below it,
and wildcards in the first level do not match topics starting with ``$``.

Usage::

    router = SubscriptionRouter()
    router.subscribe("rapp/v1/dev/ota/cmd", on_command, qos=1)
    router.subscribe("rapp/v1/dev/ota/chunk/+", on_chunk, qos=1)
    for handler in router.route(message.topic): handler(message.topic, payload)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

MessageHandler = Callable[[str, bytes], None]

DEFAULT_CACHE_SIZE = 1024


def is_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


def levels_match(filter_levels: tuple[str, ...], topic_levels: list[str], system: bool) -> bool:
    """Whether a topic filter matches a topic, both split at ``/``; ``system``: the topic
    starts with ``$`` (see the module docstring)."""
    for i, level in enumerate(filter_levels):
        if level == "#":
            return i == len(filter_levels) - 1 and not (system and i == 0)
        if i >= len(topic_levels):
            return False
        if level == "+":
            if system and i == 0:
                return False
        elif level != topic_levels[i]:
            return False
    return len(filter_levels) == len(topic_levels)


def filter_matches(topic_filter: str, topic: str) -> bool:
    return levels_match(tuple(topic_filter.split("/")), topic.split("/"), topic.startswith("$"))


@dataclass(frozen=True, slots=True)
class Subscription:
    topic_filter: str
    qos: int
    handler: MessageHandler


class _Routes:
    """An immutable view of the subscriptions plus the per-topic cache built on it."""

    __slots__ = ("cache", "exact", "has_wildcards", "levels", "subscriptions")

    def __init__(self, subscriptions: tuple[Subscription, ...]) -> None:
        self.subscriptions = subscriptions
        self.exact: dict[str, tuple[MessageHandler, ...]] = {
            s.topic_filter: (s.handler,) for s in subscriptions if not is_wildcard(s.topic_filter)
        }
        # each filter split once; None for exact filters (compared as strings)
        self.levels = tuple(
            tuple(s.topic_filter.split("/")) if is_wildcard(s.topic_filter) else None
            for s in subscriptions
        )
        self.has_wildcards = any(levels is not None for levels in self.levels)
        self.cache: dict[str, tuple[MessageHandler, ...]] = {}

    def resolve(self, topic: str) -> tuple[MessageHandler, ...]:
        """Every matching handler, in subscription order."""
        topic_levels = topic.split("/")
        system = topic.startswith("$")
        return tuple(
            s.handler
            for s, levels in zip(self.subscriptions, self.levels, strict=True)
            if (
                s.topic_filter == topic
                if levels is None
                else levels_match(levels, topic_levels, system)
            )
        )


class SubscriptionRouter:
    """Topic filter -> (QoS, handler); one handler per filter (subscribing again replaces it).

    Thread-safe: the link subscribes from any thread and routes on paho's network thread.
    """

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size = {cache_size!r}: must be >= 1")
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._by_filter: dict[str, Subscription] = {}
        self._routes = _Routes(())

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        with self._lock:
            self._by_filter[topic_filter] = Subscription(topic_filter, qos, handler)
            self._routes = _Routes(tuple(self._by_filter.values()))

    def subscriptions(self) -> tuple[Subscription, ...]:
        """In subscription order (a re-subscribed filter keeps its place)."""
        with self._lock:
            return self._routes.subscriptions

    def route(self, topic: str) -> tuple[MessageHandler, ...]:
        """The handlers of every filter matching ``topic`` (empty if none), in subscription
        order."""
        with self._lock:
            routes = self._routes
            if not routes.has_wildcards:
                return routes.exact.get(topic, ())
            handlers = routes.cache.get(topic)
            if handlers is None:
                handlers = routes.resolve(topic)
                if len(routes.cache) >= self._cache_size:
                    del routes.cache[next(iter(routes.cache))]
                routes.cache[topic] = handlers
            return handlers

    def cached_topics(self) -> int:
        """How many topics the current cache holds (for tests and diagnostics)."""
        with self._lock:
            return len(self._routes.cache)
