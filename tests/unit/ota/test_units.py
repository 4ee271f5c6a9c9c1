"""Unit tests: keys and signing, the command and chunk bookkeeping, the model store and
pointer, probation verdicts, the main-loop call queue, the [ota] config table, and the
install parts (intake, probation board, hooks) against stand-ins for the daemon."""

from __future__ import annotations

import base64
import json
import stat
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import ConfigError, parse_config
from agent.core.bundle import BundleError, TrustPolicy, load_bundle
from agent.core.bundle.archive import read_archive
from agent.core.bundle.manifest import SIGNATURE_NAME
from agent.core.tables import Table
from agent.models import ScorerSettings
from agent.ota.admin import list_models, rollback
from agent.ota.authenticate import CommandAuthenticator
from agent.ota.errors import OtaError, StoreError, TransferError
from agent.ota.fetch import UrlFetcher
from agent.ota.hooks import OtaHooks
from agent.ota.intake import Delivery, IntakeParts, NeedRequests, TransferIntake
from agent.ota.mainloop import MainLoopCalls
from agent.ota.probation import Probation
from agent.ota.probation_board import ProbationBoard
from agent.ota.refusals import Refusals
from agent.ota.settings import OtaSettings
from agent.ota.status import OtaReporter
from agent.ota.store import ModelStore
from agent.ota.transfer import DoneLog, Staging, TransferCommand, parse_command
from agent.ota.verify import Verifier
from agent.ota.versions import ServingVersions
from agent.pipeline.alarms import ModelRef
from agent.pipeline.routes import Swap
from agent.sinks.topics import Topics
from exporter.cli import main as export_main
from exporter.keys import keygen, load_private_key, sign_bundle
from exporter.model import ExportError
from tests.support.agents_inprocess import validate
from tests.support.failpoint_agent import FailpointHooks
from tests.support.fixtures.ota import repack

# -- keys and signing ------------------------------------------------------------------------


def test_keygen_writes_a_private_0600_key_and_a_base64_pub(tmp_path):
    key, pub = keygen(tmp_path / "k")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    raw = base64.b64decode(pub.read_text().strip(), validate=True)
    assert len(raw) == 32
    assert b"PRIVATE KEY" in key.read_bytes()
    with pytest.raises(ExportError, match="refusing to overwrite"):
        keygen(tmp_path / "k")


def test_sign_is_deterministic_atomic_and_verifies_with_the_agent_policy(
    tmp_path, built_bundle, capsys
):
    key_path, pub = keygen(tmp_path / "k")
    bundle = tmp_path / "b.rapp"
    bundle.write_bytes(built_bundle.data)
    assert export_main(["sign", "--bundle", str(bundle), "--key", str(key_path),
                        "--out", str(tmp_path / "s1.rapp")]) == 0  # fmt: skip
    assert export_main(["sign", "--bundle", str(bundle), "--key", str(key_path),
                        "--out", str(tmp_path / "s2.rapp")]) == 0  # fmt: skip
    signed = (tmp_path / "s1.rapp").read_bytes()
    assert signed == (tmp_path / "s2.rapp").read_bytes()
    trusted = TrustPolicy((base64.b64decode(pub.read_text()),), allow_unsigned=False)
    assert load_bundle(signed, trusted).signed_by == trusted.trusted_keys[0]
    with pytest.raises(BundleError, match="missing"):
        load_bundle(built_bundle.data, trusted)
    other = load_private_key(keygen(tmp_path / "o")[0])
    with pytest.raises(BundleError, match="does not verify"):
        load_bundle(sign_bundle(built_bundle.data, other), trusted)
    # signing in place replaces the signature, the rest is untouched
    assert export_main(["sign", "--bundle", str(bundle), "--key", str(key_path)]) == 0
    before, after = read_archive(built_bundle.data), read_archive(bundle.read_bytes())
    assert set(after) - set(before) <= {SIGNATURE_NAME}
    assert all(after[n] == before[n] for n in before if n != SIGNATURE_NAME)
    capsys.readouterr()


def test_load_private_key_explains_bad_files(tmp_path):
    with pytest.raises(ExportError, match="keygen"):
        load_private_key(tmp_path / "none")
    (tmp_path / "bad").write_text("not a key")
    with pytest.raises(ExportError, match="PEM"):
        load_private_key(tmp_path / "bad")


# -- command and chunk bookkeeping -----------------------------------------------------------


def _command(data: bytes, chunk: int, tid: str = "t1") -> TransferCommand:
    return TransferCommand.for_bundle(data, tid, "b", "1", chunk_size=chunk)


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=3000),
    chunk=st.integers(1, 700),
    order=st.randoms(use_true_random=False),
    kill_after=st.integers(0, 10),
)
def test_chunks_in_any_order_with_duplicates_and_a_restart_rebuild_the_file(
    tmp_path_factory, data, chunk, order, kill_after
):
    root = tmp_path_factory.mktemp("staging")
    command = parse_command(json.dumps(_command(data, chunk).to_json()).encode())
    staging = Staging.create(root, command)
    indices = list(range(command.n_chunks)) * 2
    order.shuffle(indices)
    for step, i in enumerate(indices):
        if step == kill_after:  # a new process: only what is on disk counts
            staging = Staging.resume_all(root)[0]
            assert staging.missing() == sorted(set(range(command.n_chunks)) - set(indices[:step]))
        staging.add(i, data[i * chunk : (i + 1) * chunk])
    assert staging.missing() == [] and staging.received_bytes == len(data)
    assert staging.assemble() == data


def test_bad_chunks_and_commands_are_refused(tmp_path):
    data = bytes(range(256)) * 10
    staging = Staging.create(tmp_path, _command(data, 1000))
    with pytest.raises(TransferError, match="sha256 mismatch"):
        staging.add(0, b"x" * 1000)
    with pytest.raises(TransferError, match="expected 1000"):
        staging.add(1, data[1000:1500])
    with pytest.raises(TransferError, match="out of range"):
        staging.add(3, b"")
    with pytest.raises(TransferError, match="incomplete"):
        staging.assemble()
    good = _command(data, 1000).to_json()
    validate(good, "ota_cmd")
    for change, match in (
        ({"schema": "x"}, "schema"),
        ({"transfer_id": "a/b"}, "transfer_id"),
        ({"size": 0}, "size"),
        ({"chunks": good["chunks"][:-1]}, "chunk hashes"),
        ({"url": "ftp://x"}, "file:// and https://"),
    ):
        with pytest.raises(TransferError, match=match):
            parse_command(json.dumps({**good, **change}).encode())
    with pytest.raises(TransferError, match="JSON"):
        parse_command(b"\xff")


def test_done_log_survives_reopen_and_stays_bounded(tmp_path):
    log = DoneLog.load(tmp_path / "done.json")
    for i in range(100):
        log.record(f"t{i}", "committed")
    log.record("t5", "rejected", "why")
    again = DoneLog.load(tmp_path / "done.json")
    assert again.get("t99") == ("committed", "")
    assert again.get("t5") == ("rejected", "why")
    assert again.get("t0") is None


# -- store and pointer -----------------------------------------------------------------------


def test_store_activate_commit_rollback_and_prune(tmp_path):
    store = ModelStore(tmp_path)
    a = store.put("r1", bytes([1]) * 10)
    assert store.put("r1", bytes([1]) * 10) == a  # idempotent, immutable name
    first = store.activate("r1", "m", a, "1", "t1")
    assert (first.previous, first.state) == (None, "probation")
    store.commit("r1", "m")
    b, c = (store.put("r1", bytes([n]) * 10) for n in (2, 3))
    second = store.activate("r1", "m", b, "2", "t2")
    assert (second.active, second.previous) == (b, a)
    store.commit("r1", "m")  # prune: c is referenced by nobody
    assert sorted(p.stem for p in store.files("r1")) == sorted([a, b])
    restored = store.rollback("r1", "m")
    assert restored is not None and (restored.active, restored.previous) == (a, None)
    assert store.rollback("r1", "m") is None  # back to the configured bundle
    assert store.pointer("r1") == {}
    assert c not in [p.stem for p in store.files("r1")]
    with pytest.raises(StoreError, match="put"):
        store.activate("r1", "m", "0" * 64, "x", "t")
    (store.robot_dir("r1") / "pointer.json").write_text("{")
    with pytest.raises(StoreError, match="unreadable"):
        store.pointer("r1")


def test_committing_a_merged_bundle_retires_the_members_it_superseded(tmp_path):
    store = ModelStore(tmp_path)
    shas = {}
    for bid, content in (("p7", b"7"), ("p8", b"8 old"), ("p8", b"8"), ("p9", b"9")):
        shas[content] = store.put("r", content)  # a commit prunes unreferenced files
        store.activate("r", bid, shas[content], "1", "t")
        store.commit("r", bid)
    p7, p8, p8_old = shas[b"7"], shas[b"8"], shas[b"8 old"]
    merged = store.put("r", b"merged")
    store.activate("r", "p7", merged, "2", "tm")
    assert set(store.pointer("r")) == {"p7", "p8", "p9"}, "members stay until the commit"
    store.commit("r", "p7", retire=["p8", "p7"])  # its own id is never retired
    pointer = store.pointer("r")
    assert set(pointer) == {"p7", "p9"} and pointer["p7"].active == merged
    stems = {p.stem for p in store.files("r")}
    assert {p8, p8_old}.isdisjoint(stems) and {merged, p7} <= stems


def test_reinstalling_the_active_bundle_keeps_the_older_fallback(tmp_path):
    store = ModelStore(tmp_path)
    a, b = store.put("r", b"a"), store.put("r", b"b")
    store.activate("r", "m", a, "1", "t1")
    store.activate("r", "m", b, "2", "t2")
    again = store.activate("r", "m", b, "2", "t3")
    assert again.previous == a


# -- probation ---------------------------------------------------------------------------------


class _W:
    def __init__(self, score: float, threshold: float = 1.0, latency: float = 0.01) -> None:
        self.model = ModelRef("m", "2")
        self.score, self.threshold, self.latency_s = score, threshold, latency


def _probation(**kw) -> Probation:
    args = dict(robot="r", model=ModelRef("m", "2"), transfer_id="t", swap=None,
                windows=10, max_alarm_rate=0.2, max_latency_s=1.0)  # fmt: skip
    return Probation(**{**args, **kw})


def test_probation_verdicts():
    p = _probation()
    assert p.observe([_W(0.1)] * 9) is None
    assert p.observe([_W(0.1)]).committed
    nan = _probation().observe([_W(0.1), _W(float("nan"))])
    assert nan is not None and not nan.committed and "non-finite" in nan.reason
    alarms = _probation().observe([_W(5.0)] * 3)
    assert alarms is not None and not alarms.committed and "above threshold" in alarms.reason
    slow = _probation().observe([_W(0.1, latency=3.0)] * 10)
    assert slow is not None and "latency" in slow.reason
    idle = _probation(max_s=5.0)
    assert idle.expired(idle.started + 1) is None
    assert idle.expired(idle.started + 6).committed


# -- main-loop calls -------------------------------------------------------------------------


def test_main_loop_calls_run_on_the_polling_thread_and_propagate_errors():
    calls = MainLoopCalls()
    seen = []

    def worker():
        seen.append(calls.call(threading.get_ident))
        with pytest.raises(ZeroDivisionError):
            calls.call(lambda: 1 / 0)

    t = threading.Thread(target=worker)
    t.start()
    while t.is_alive():
        calls.run_pending()
        t.join(0.01)
    assert seen == [threading.get_ident()]
    with pytest.raises(OtaError, match="did not run"):
        calls.call(lambda: None, timeout=0.05)


# -- config ------------------------------------------------------------------------------------


BASE = {
    "agent": {"device_id": "d"},
    "robots": [{"id": "r", "bundle": "default", "source": {"kind": "simulator"}}],
}


def test_ota_config_defaults_and_errors():
    assert parse_config(BASE).ota.probation_windows == 200
    cfg = parse_config({**BASE, "ota": {"groups": ["hall3"], "max_bundle_bytes": 4096}})
    assert cfg.ota.groups == ("hall3",) and cfg.ota.max_bundle_bytes == 4096
    for table, match in (
        ({"probation_window": 5}, "ota.probation_window: unknown key"),
        ({"groups": ["a/b"]}, "ota.groups"),
        ({"max_normal_alarm_rate": 2.0}, "between 0 and 1"),
        ({"enabled": "yes"}, "true or false"),
    ):
        with pytest.raises(ConfigError, match=match):
            parse_config({**BASE, "ota": table})


def test_models_listing_and_manual_rollback(tmp_path):
    config = parse_config({**BASE, "agent": {"device_id": "d", "state_dir": str(tmp_path)}})
    state, robots = config.agent.state_dir, {r.id: r.bundles for r in config.robots}
    store = ModelStore(tmp_path)
    assert "no bundles installed" in list_models(state, robots)
    with pytest.raises(OtaError, match="--robot"):
        rollback(state, None, None)
    a = store.put("r", b"a")
    store.activate("r", "m", a, "1", "t1")
    store.commit("r", "m")
    b = store.put("r", b"b")
    store.activate("r", "m", b, "2", "t2")
    store.commit("r", "m")
    listing = list_models(state, robots)
    assert f"m: active {b[:12]} v2 (committed" in listing and f"previous {a[:12]}" in listing
    assert "restart the agent" in rollback(state, None, None)
    assert store.pointer("r")["m"].active == a
    rollback(state, "r", "m")
    assert store.pointer("r") == {}
    with pytest.raises(OtaError, match="no installed bundle"):
        rollback(state, "r", "m")


def test_ota_settings_from_table_is_what_parse_config_reads():
    table = {"groups": ["hall3"], "max_bundle_bytes": 4096, "gate_wait_s": 3}
    settings = OtaSettings.from_table(Table(table, "ota"))
    assert settings == parse_config({**BASE, "ota": table}).ota
    assert settings.gate_wait_s == 3.0 and settings.probation_windows == 200
    assert parse_config(BASE).ota == OtaSettings()
    with pytest.raises(ConfigError, match=r"ota\.probation_window: unknown key"):
        OtaSettings.from_table(Table({"probation_window": 5}, "ota"))


# -- no I/O in constructors ------------------------------------------------------------------


def test_staging_and_done_log_touch_the_disk_only_in_their_classmethods(tmp_path):
    data = bytes(range(200))
    command = _command(data, 100)
    Staging(tmp_path / "s" / "t1", command, set())
    DoneLog(tmp_path / "d" / "done.json")
    assert not (tmp_path / "s").exists() and not (tmp_path / "d").exists()
    assert DoneLog.load(tmp_path / "d" / "done.json").get("t1") is None
    created = Staging.open(tmp_path / "s", command)
    assert (created.dir / "command.json").is_file() and created.missing() == [0, 1]
    created.add(1, data[100:])
    resumed = Staging.open(tmp_path / "s", command)
    assert resumed.missing() == [0] and resumed.received_bytes == 100


# -- intake, probation board, hooks (with stand-ins for the daemon) --------------------------


class _Hooks(OtaHooks):
    def __init__(self) -> None:
        self.reached: list[str] = []

    def reach(self, step: str) -> None:
        self.reached.append(step)


def _reporter() -> OtaReporter:
    return OtaReporter("d", Topics.for_device("d"), None)


class _Needs(NeedRequests):
    """Records the need requests instead of publishing them."""

    def __init__(self) -> None:
        super().__init__("d", "rapp/v1/d/ota/need", None)
        self.sent: list[list[int]] = []

    def send(self, staging: Staging) -> None:
        self.sent.append(staging.missing())


def _intake(
    tmp_path, hooks: OtaHooks | None = None, policy: TrustPolicy | None = None, **settings
) -> tuple[TransferIntake, OtaReporter]:
    """An intake of device ``d`` (groups ``hall3``) that accepts unsigned commands unless
    ``policy`` says otherwise."""
    reporter = _reporter()
    s = OtaSettings(groups=("hall3",), **settings)
    parts = IntakeParts(
        auth=CommandAuthenticator(policy or TrustPolicy(), "d", s.groups),
        versions=ServingVersions(ModelStore(tmp_path)),
        fetcher=UrlFetcher(s.file_url_root, s.url_timeout_s),
        refusals=Refusals(),
    )
    intake = TransferIntake(
        s,
        tmp_path / "staging",
        DoneLog.load(tmp_path / "done.json"),
        reporter,
        _Needs(),
        hooks or OtaHooks(),
        parts,
    )
    return intake, reporter


def _send(intake: TransferIntake, data: bytes, command: TransferCommand, chunks=None) -> list:
    """Deliver the command and ``chunks`` (default: all) and run the intake on each."""
    out = []
    intake.on_command("rapp/v1/d/ota/cmd", json.dumps(command.to_json()).encode())
    out.append(intake.next(can_begin=True))  # queues the command
    out.append(intake.next(can_begin=True))  # begins it
    size = command.chunk_size
    for i in range(command.n_chunks) if chunks is None else chunks:
        intake.on_chunk(f"rapp/v1/_transfer/{command.transfer_id}/{i}", data[i * size :][:size])
        out.append(intake.next(can_begin=True))
    return out


def test_intake_delivers_a_complete_transfer_once(tmp_path):
    hooks = _Hooks()
    intake, reporter = _intake(tmp_path, hooks)
    data = bytes(range(256)) * 3
    command = _command(data, 100)
    *waiting, delivery = _send(intake, data, command)
    assert all(step is None for step in waiting) and delivery is not None
    assert delivery.data == data and delivery.command == command
    assert hooks.reached == ["downloading"] and reporter.last["state"] == "downloading"
    intake.finished(delivery)
    assert not (tmp_path / "staging" / command.transfer_id).exists()
    intake.done.record(command.transfer_id, "committed")
    assert _send(intake, data, command, chunks=[]) == [None, None]  # re-delivered: ignored


def test_intake_ignores_a_tampered_chunk_asks_again_and_completes(tmp_path):
    """Any broker client can publish on a chunk topic: a copy that does not match the signed
    hashes (wrong bytes, 7 bytes, out of range) is ignored and re-requested, never fatal."""
    intake, reporter = _intake(tmp_path, need_interval_s=0.1)
    data = bytes(range(256)) * 3
    command = _command(data, 100)
    _send(intake, data, command, chunks=[0])
    topic = f"rapp/v1/_transfer/{command.transfer_id}"
    for index, junk in ((1, b"x" * 100), (1, b"7 bytes"), (99, b"y" * 100), (2, b"")):
        intake.on_chunk(f"{topic}/{index}", junk)
        assert intake.next(can_begin=True) is None
    assert reporter.last["state"] == "downloading", "the transfer goes on"
    assert intake.done.get(command.transfer_id) is None
    assert intake.refusals.counts()["bad_chunk"] == 4
    time.sleep(0.15)
    intake.next(can_begin=True)
    assert intake.needs.sent[-1] == list(range(1, command.n_chunks)), "asked for them again"
    *_, delivery = _send(intake, data, command, chunks=range(1, command.n_chunks))
    assert delivery is not None and delivery.data == data


def _route(bundle_id: str) -> Any:
    """Enough of a ModelRoute for the probation board: its model."""
    return SimpleNamespace(model=ModelRef(bundle_id, "1"))


class _Robot:
    def __init__(self) -> None:
        self.restored: list[object] = []

    def restore(self, swap: object) -> None:
        self.restored.append(swap)


def test_probation_board_commits_or_rolls_back_and_owns_its_state(tmp_path):
    store, robot, changes = ModelStore(tmp_path), _Robot(), []
    done = DoneLog.load(tmp_path / "done.json")
    reporter = _reporter()
    board = ProbationBoard(
        OtaSettings(probation_windows=10), {"r": robot}, store, done, reporter,
        lambda: changes.append(1),
    )  # fmt: skip
    store.activate("r", "m", store.put("r", b"a"), "2", "t1")
    board.start("r", ModelRef("m", "2"), "t1", Swap(_route("m")))
    assert board.busy
    board.observe("r", [_W(0.1)] * 10)
    assert not board.busy and reporter.last["state"] == "committed"
    assert store.pointer("r")["m"].state == "committed" and done.get("t1")[0] == "committed"
    store.activate("r", "m", store.put("r", b"b"), "3", "t2")
    rollback = Swap(_route("m"))
    board.start("r", ModelRef("m", "2"), "t2", rollback)
    board.observe("other", [_W(float("nan"))])  # another robot's windows do not count
    assert board.busy
    board.observe("r", [_W(float("nan"))])
    assert not board.busy and robot.restored == [rollback] and len(changes) == 2
    assert reporter.last["state"] == "rolled_back" and "non-finite" in reporter.last["reason"]
    assert store.pointer("r")["m"].state == "committed" and done.get("t2")[0] == "rolled_back"


def test_failpoint_hooks_parse_and_default_hooks_do_nothing():
    hooks = FailpointHooks.parse("verifying=sleep:0.01, nan_after_activation=b@3")
    assert hooks.sleeps == {"verifying": 0.01} and hooks.nan_bundle == "b@3"
    with pytest.raises(ValueError, match="failpoint"):
        FailpointHooks.parse("verify=sleep:1")
    sentinel = object()
    assert OtaHooks().on_activation(sentinel) is sentinel  # type: ignore[arg-type]
    assert OtaHooks().reach("staged") is None


class _Gate:
    def __init__(self) -> None:
        self.checked: list[str] = []

    def check(self, transfer_id: str, robot: str, scorer, deadline=None) -> None:
        self.checked.append(robot)


class _Target:
    """A robot that matches the bundle's input spec, with a chosen channel-map hash."""

    def __init__(self, spec, schema_hash: int | None) -> None:
        self.input_spec = spec
        self.source_channels = tuple(spec.channels)
        self.schema_hash = schema_hash


def test_verifier_checks_robot_and_schema_hash_through_the_host_view(built_bundle, tmp_path):
    declared = 0x1234
    data = repack(built_bundle.data, None, lambda m: m["input"].update(schema_hash=declared))
    spec = load_bundle(data).manifest.input
    gate = _Gate()

    def verify(robots, robot=None):
        command = TransferCommand.for_bundle(data, "t1", "test-bundle", "1", robot=robot)
        verifier = Verifier(
            OtaSettings(), TrustPolicy(), ScorerSettings(), robots, gate, _reporter(), OtaHooks(),
            ServingVersions(ModelStore(tmp_path)),
        )  # fmt: skip
        return verifier.verify(Delivery(command, data, None))

    robot, scorer = verify({"arm1": _Target(spec, declared)})
    assert robot == "arm1" and scorer.bundle.bundle_id == "test-bundle" and gate.checked == [robot]
    assert verify({"arm1": _Target(spec, None)})[0] == "arm1"  # no channel map: nothing to match
    with pytest.raises(OtaError, match="schema hash 0x1234, robot 'arm1'"):
        verify({"arm1": _Target(spec, declared + 1)})
    with pytest.raises(OtaError, match="'arm2' is not on this device"):
        verify({"arm1": _Target(spec, declared)}, robot="arm2")
    with pytest.raises(OtaError, match="push with --robot"):
        verify({"arm1": _Target(spec, declared), "arm3": _Target(spec, declared)})
