"""Unit tests: keys and signing, the command and chunk bookkeeping, the model store and
pointer, probation verdicts, the main-loop call queue and the [ota] config table."""

from __future__ import annotations

import base64
import json
import stat
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import ConfigError, parse_config
from agent.core.bundle import BundleError, TrustPolicy, load_bundle
from agent.core.bundle.archive import read_archive
from agent.core.bundle.manifest import SIGNATURE_NAME
from agent.ota.admin import list_models, rollback
from agent.ota.errors import OtaError, StoreError, TransferError
from agent.ota.mainloop import MainLoopCalls
from agent.ota.probation import Probation
from agent.ota.store import ModelStore
from agent.ota.transfer import DoneLog, Staging, TransferCommand, parse_command
from agent.pipeline.alarms import ModelRef
from exporter.cli import main as export_main
from exporter.keys import keygen, load_private_key, sign_bundle
from exporter.model import ExportError
from tests.support.agents_inprocess import validate

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
    staging = Staging(root, command)
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
    staging = Staging(tmp_path, _command(data, 1000))
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
    log = DoneLog(tmp_path / "done.json")
    for i in range(100):
        log.record(f"t{i}", "committed")
    log.record("t5", "rejected", "why")
    again = DoneLog(tmp_path / "done.json")
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
    args = dict(robot="r", model=ModelRef("m", "2"), transfer_id="t", previous_route=None,
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
    store = ModelStore(tmp_path)
    assert "no bundles installed" in list_models(config)
    with pytest.raises(OtaError, match="--robot"):
        rollback(config, None, None)
    a = store.put("r", b"a")
    store.activate("r", "m", a, "1", "t1")
    store.commit("r", "m")
    b = store.put("r", b"b")
    store.activate("r", "m", b, "2", "t2")
    store.commit("r", "m")
    listing = list_models(config)
    assert f"m: active {b[:12]} v2 (committed" in listing and f"previous {a[:12]}" in listing
    assert "restart the agent" in rollback(config, None, None)
    assert store.pointer("r")["m"].active == a
    rollback(config, "r", "m")
    assert store.pointer("r") == {}
    with pytest.raises(OtaError, match="no installed bundle"):
        rollback(config, "r", "m")
