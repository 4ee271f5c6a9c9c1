"""Unit tests of the install path's limits with stand-ins for the daemon: the verifier binds
the bundle to the signed command's version and refuses downgrades once the target robot is
known, verification and the gate end at their deadline, and the manager says at start when
unsigned commands are accepted."""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace

import pytest

from agent.core.bundle import TrustPolicy, load_bundle
from agent.models import ScorerSettings
from agent.ota.command import TransferCommand
from agent.ota.errors import OtaError
from agent.ota.gate import RecentNormalGate
from agent.ota.hooks import OtaHooks
from agent.ota.intake import Delivery
from agent.ota.mainloop import MainLoopCalls
from agent.ota.manager import OtaManager
from agent.ota.settings import OtaSettings
from agent.ota.status import OtaReporter
from agent.ota.store import ModelStore
from agent.ota.verify import Verifier
from agent.ota.versions import ServingVersions
from agent.sinks.topics import Topics
from tests.support.fixtures.ota import repack, version


class _Target:
    def __init__(self, spec) -> None:
        self.input_spec = spec
        self.source_channels = tuple(spec.channels)
        self.schema_hash = None


class _Gate:
    def check(self, transfer_id, robot, scorer, deadline=None) -> None:
        pass


class _SlowScoring(ScorerSettings):
    def open(self, bundle):
        time.sleep(1.5)
        return super().open(bundle)


def _configured(bundle_id: str, version_: str):
    manifest = SimpleNamespace(bundle_id=bundle_id, bundle_version=version_)
    return SimpleNamespace(bundle=SimpleNamespace(manifest=manifest))


@pytest.fixture(scope="module")
def v5(built_bundle) -> bytes:
    return repack(built_bundle.data, None, version("5"))


def _verifier(tmp_path, v5: bytes, scoring=None, **settings):
    spec = load_bundle(v5).manifest.input
    versions = ServingVersions(ModelStore(tmp_path))
    versions.note_configured("arm1", [_configured("test-bundle", "7")])
    versions.note_configured("arm2", [_configured("test-bundle", "1")])
    return Verifier(
        OtaSettings(**settings), TrustPolicy(), scoring or ScorerSettings(),
        {"arm1": _Target(spec), "arm2": _Target(spec)}, _Gate(),  # type: ignore[arg-type]
        OtaReporter("d", Topics.for_device("d"), None), OtaHooks(), versions,
    )  # fmt: skip


def _delivery(data: bytes, version_: str, robot: str, rollback: bool = False) -> Delivery:
    command = TransferCommand.for_bundle(
        data, "t1", "test-bundle", version_, robot=robot, rollback=rollback
    )
    return Delivery(command, data, None)


def test_the_bundle_must_be_the_signed_version_and_newer_on_its_robot(tmp_path, v5):
    verifier = _verifier(tmp_path, v5)
    with pytest.raises(OtaError, match="the bundle's version is '5' but the command announced '6'"):
        verifier.verify(_delivery(v5, "6", "arm2"))
    with pytest.raises(OtaError, match="version 5 of test-bundle is not newer than version 7"):
        verifier.verify(_delivery(v5, "5", "arm1"))
    assert verifier.verify(_delivery(v5, "5", "arm2"))[0] == "arm2"
    assert verifier.verify(_delivery(v5, "5", "arm1", rollback=True))[0] == "arm1"


def test_verification_ends_at_its_deadline(tmp_path, v5):
    # 1 s, not less: on a busy box loading the bundle alone can take a tenth of a second, and
    # the deadline must fall in the slow canary step, not before it.
    verifier = _verifier(tmp_path, v5, scoring=_SlowScoring(), verify_timeout_s=1.0)
    with pytest.raises(OtaError, match=r"longer than 1 s \(\[ota\] verify_timeout_s\), at the"):
        verifier.verify(_delivery(v5, "5", "arm2"))


def test_the_gate_waits_no_longer_than_the_verification_deadline():
    calls, halt, stop = MainLoopCalls(), threading.Event(), threading.Event()
    robot = SimpleNamespace(recent_normal=lambda: [])
    gate = RecentNormalGate(
        OtaSettings(min_recent_windows=10, gate_wait_s=60), {"r": robot}, calls, halt
    )  # type: ignore[arg-type]

    def main_loop() -> None:
        while not stop.is_set():
            calls.run_pending()
            time.sleep(0.01)

    loop = threading.Thread(target=main_loop, daemon=True)
    loop.start()
    scorer = SimpleNamespace(bundle=SimpleNamespace(manifest=SimpleNamespace(programs=())))
    started = time.monotonic()
    gate.check("t1", "r", scorer, deadline=time.monotonic() + 0.3)  # type: ignore[arg-type]
    stop.set()
    assert time.monotonic() - started < 2


class _Link:
    def __init__(self) -> None:
        self.topics: list[str] = []

    def subscribe(self, topic, handler, qos=1) -> None:
        self.topics.append(topic)


@pytest.mark.parametrize("allow_unsigned", [True, False])
def test_the_start_log_says_when_unsigned_commands_are_accepted(tmp_path, caplog, allow_unsigned):
    manager = OtaManager.open(
        OtaSettings(groups=("hall3",)), state_dir=tmp_path, device_id="d",
        scoring=ScorerSettings(), policy=TrustPolicy((), allow_unsigned=allow_unsigned),
        topics=Topics.for_device("d"), outbox=None,
    )  # fmt: skip
    link = _Link()
    with caplog.at_level(logging.WARNING, "agent.ota"):
        manager.start(link, {})
    manager.stop()
    assert ("unsigned update commands are accepted" in caplog.text) == allow_unsigned
    assert "rapp/v1/group/hall3/ota/cmd" in link.topics and manager.refusals() == {}
