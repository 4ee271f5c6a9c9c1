"""SubscriptionRouter: routes like paho's topic_matches_sub, without matching on every message."""

from __future__ import annotations

from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sinks.mqtt.router import SubscriptionRouter, filter_matches


def recorder(name: str, calls: list[str]) -> Callable[[str, bytes], None]:
    return lambda topic, _payload: calls.append(f"{name}:{topic}")


def routed(router: SubscriptionRouter, topic: str, calls: list[str]) -> list[str]:
    """Deliver one message on ``topic``; the handler calls it caused."""
    calls.clear()
    for handler in router.route(topic):
        handler(topic, b"")
    return list(calls)


@pytest.fixture
def calls() -> list[str]:
    return []


def test_exact_topic(calls: list[str]) -> None:
    router = SubscriptionRouter()
    router.subscribe("rapp/v1/d/ota/cmd", recorder("cmd", calls))
    assert routed(router, "rapp/v1/d/ota/cmd", calls) == ["cmd:rapp/v1/d/ota/cmd"]
    assert routed(router, "rapp/v1/d/ota/cmd/x", calls) == []
    assert router.cached_topics() == 0, "exact-only routing needs no cache"


def test_plus_and_hash(calls: list[str]) -> None:
    router = SubscriptionRouter()
    router.subscribe("rapp/v1/d/ota/chunk/+", recorder("chunk", calls))
    router.subscribe("rapp/v1/group/#", recorder("group", calls))
    assert routed(router, "rapp/v1/d/ota/chunk/7", calls) == ["chunk:rapp/v1/d/ota/chunk/7"]
    assert routed(router, "rapp/v1/d/ota/chunk/7/8", calls) == []
    assert routed(router, "rapp/v1/d/ota/chunk/", calls) == ["chunk:rapp/v1/d/ota/chunk/"]
    assert routed(router, "rapp/v1/group", calls) == ["group:rapp/v1/group"], "# matches the parent"
    assert routed(router, "rapp/v1/group/g1/ota/cmd", calls) == ["group:rapp/v1/group/g1/ota/cmd"]


def test_several_handlers_in_subscription_order(calls: list[str]) -> None:
    router = SubscriptionRouter()
    router.subscribe("a/+/c", recorder("plus", calls))
    router.subscribe("a/b/c", recorder("exact", calls))
    router.subscribe("#", recorder("all", calls))
    router.subscribe("x/y", recorder("other", calls))
    assert routed(router, "a/b/c", calls) == ["plus:a/b/c", "exact:a/b/c", "all:a/b/c"]
    # subscribing a filter again replaces its handler and keeps its place
    router.subscribe("a/+/c", recorder("plus2", calls), qos=0)
    assert routed(router, "a/b/c", calls) == ["plus2:a/b/c", "exact:a/b/c", "all:a/b/c"]
    assert [(s.topic_filter, s.qos) for s in router.subscriptions()] == [
        ("a/+/c", 0),
        ("a/b/c", 1),
        ("#", 1),
        ("x/y", 1),
    ]


def test_topic_matching_none(calls: list[str]) -> None:
    router = SubscriptionRouter()
    assert router.route("a/b") == ()
    router.subscribe("a/+", recorder("a", calls))
    router.subscribe("b/#", recorder("b", calls))
    assert router.route("c/d") == ()
    assert router.route("$SYS/x") == ()
    assert calls == []


def test_wildcards_do_not_match_dollar_topics_at_the_first_level(calls: list[str]) -> None:
    router = SubscriptionRouter()
    router.subscribe("#", recorder("all", calls))
    router.subscribe("+/x", recorder("plus", calls))
    router.subscribe("$SYS/#", recorder("sys", calls))
    assert routed(router, "$SYS/x", calls) == ["sys:$SYS/x"]


def test_cache_is_bounded_and_rebuilt_on_subscribe(calls: list[str]) -> None:
    router = SubscriptionRouter(cache_size=4)
    router.subscribe("t/+", recorder("t", calls))
    for i in range(10):
        assert len(router.route(f"t/{i}")) == 1
    assert router.cached_topics() == 4
    router.subscribe("t/#", recorder("hash", calls))
    assert router.cached_topics() == 0, "a subscription change drops the cache"
    assert routed(router, "t/1", calls) == ["t:t/1", "hash:t/1"]


LEVELS = st.sampled_from(["a", "b", "", "$SYS", "$x", "long-level", "a b"])
TOPICS = st.lists(LEVELS, min_size=1, max_size=5).map("/".join)


@st.composite
def filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.one_of(LEVELS, st.just("+")), min_size=1, max_size=5))
    if draw(st.booleans()):
        levels = [*levels[: draw(st.integers(0, len(levels)))], "#"]
    return "/".join(levels)


@settings(max_examples=500, deadline=None)
@given(topic_filter=filters(), topic=TOPICS)
def test_filter_matches_agrees_with_paho(topic_filter: str, topic: str) -> None:
    assert filter_matches(topic_filter, topic) == mqtt.topic_matches_sub(topic_filter, topic)


@settings(max_examples=200, deadline=None)
@given(subscribed=st.lists(filters(), min_size=1, max_size=6, unique=True), topics=st.lists(TOPICS))
def test_router_agrees_with_paho(subscribed: list[str], topics: list[str]) -> None:
    router = SubscriptionRouter(cache_size=3)
    handlers = {}
    for topic_filter in subscribed:
        handlers[topic_filter] = lambda _t, _p, f=topic_filter: None
        router.subscribe(topic_filter, handlers[topic_filter])
    for topic in topics + topics:  # the second pass answers from the cache (or after eviction)
        expected = tuple(handlers[f] for f in subscribed if mqtt.topic_matches_sub(f, topic))
        assert router.route(topic) == expected
