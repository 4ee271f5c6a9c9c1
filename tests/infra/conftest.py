"""Fixtures for the infrastructure tests: a real mosquitto broker per test, outboxes, schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from agent.mqtt.payloads import SCHEMA_NAMES, load_schema
from agent.outbox import Outbox
from tests.infra.broker import MosquittoBroker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running mosquitto on a free loopback port; fails (not skips) if mosquitto is missing."""
    b = MosquittoBroker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.kill()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "state" / "outbox.sqlite3", telemetry_max_rows=100)
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="session")
def validators() -> dict[str, jsonschema.protocols.Validator]:
    """Draft 2020-12 validators for every payload schema, with format checking on."""
    out = {}
    for name in SCHEMA_NAMES:
        schema = load_schema(name)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        out[name] = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return out
