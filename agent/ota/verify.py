"""Verification of a received bundle, cheap and most telling checks first.

1. ``load_bundle`` with the agent's trust policy: signature against ``[trust] keys`` (an
   unsigned bundle only with ``allow_unsigned``), every file's sha256, the manifest schema,
   safe archive reading (no ``..``, absolute paths, links, oversized members), the minimum
   agent version;
2. the bundle id and version match the signed command; the target robot exists (``robot``
   of the command, or the manifest's robot id, or the device's only robot); the version is
   newer than the one serving that robot's bundle id, unless the command is a signed
   rollback (agent/ota/versions.py);
3. compatibility with the robot: the source delivers the bundle's channels, the sample rate
   matches, the input spec (segmentation, features) equals the robot's other bundles', and a
   ``schema_hash`` in the manifest's input section equals the channel map's;
4. the scorer opens on this device's backend and passes the golden canary;
5. the recent-normal gate (agent/ota/gate.py).

(Size caps and chunk / whole-file hashes were checked by the intake before.) All of it must
finish within ``[ota] verify_timeout_s``: the deadline is checked between the steps, the
gate waits for recent windows no longer than it, and the steps in between are bounded on
their own (archive caps, a canary of a few windows, 30 s per call to the main loop).
"""

from __future__ import annotations

import time

from agent.core.bundle import Bundle, BundleError, Limits, TrustPolicy, load_bundle
from agent.core.bundle.archive import DEFAULT_MAX_MEMBER_BYTES
from agent.core.scoring import Scorer, ScoringError
from agent.models import ModelLoadError, ScorerSettings, column_selection
from agent.ota.command import TransferCommand
from agent.ota.errors import OtaError
from agent.ota.gate import RecentNormalGate
from agent.ota.hooks import OtaHooks
from agent.ota.host import Robots
from agent.ota.intake import Delivery
from agent.ota.settings import OtaSettings
from agent.ota.status import OtaReporter
from agent.ota.versions import ServingVersions
from agent.pipeline.alarms import ModelRef


class Verifier:
    """Turns a delivered file into the target robot and a canary-checked scorer, or raises
    :class:`OtaError` with the reason (worker thread)."""

    def __init__(
        self,
        settings: OtaSettings,
        policy: TrustPolicy,
        scoring: ScorerSettings,
        robots: Robots,
        gate: RecentNormalGate,
        reporter: OtaReporter,
        hooks: OtaHooks,
        versions: ServingVersions,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.scoring = scoring
        self.robots = robots
        self.gate = gate
        self.reporter = reporter
        self.hooks = hooks
        self.versions = versions

    def verify(self, delivery: Delivery) -> tuple[str, Scorer]:
        """Report ``verifying``, then check (see the module docstring): (robot, scorer)."""
        command, data = delivery.command, delivery.data
        self.reporter.report(
            "verifying", command.transfer_id, robot=command.robot,
            bundle=ModelRef(command.bundle_id, command.version or "?"),
            received_bytes=len(data), total_bytes=command.size,
        )  # fmt: skip
        self.hooks.reach("verifying")
        deadline = time.monotonic() + self.settings.verify_timeout_s
        bundle = self._load(command, data)
        robot = self._target_robot(command, bundle)
        self.versions.check(robot, bundle.bundle_id, command.version, command.rollback)
        self._check_compatible(robot, bundle)
        self._in_time(deadline, "loading the bundle")
        try:
            scorer = self.scoring.open(bundle)
        except (ScoringError, BundleError) as err:
            raise OtaError(f"canary failed on this device: {err}") from err
        self._in_time(deadline, "the canary")
        self.gate.check(command.transfer_id, robot, scorer, deadline)
        self._in_time(deadline, "the recent-normal gate")
        return robot, scorer

    def _in_time(self, deadline: float, step: str) -> None:
        if time.monotonic() > deadline:
            raise OtaError(
                f"verification took longer than {self.settings.verify_timeout_s:g} s "
                f"([ota] verify_timeout_s), at {step}"
            )

    def _load(self, command: TransferCommand, data: bytes) -> Bundle:
        cap = self.settings.max_bundle_bytes
        try:
            bundle = load_bundle(data, self.policy, Limits(min(DEFAULT_MAX_MEMBER_BYTES, cap), cap))
        except BundleError as err:
            raise OtaError(f"invalid bundle: {err}") from err
        if bundle.bundle_id != command.bundle_id:
            raise OtaError(
                f"the bundle's id is {bundle.bundle_id!r} but the command announced "
                f"{command.bundle_id!r}"
            )
        if bundle.manifest.bundle_version != command.version:
            raise OtaError(
                f"the bundle's version is {bundle.manifest.bundle_version!r} but the command "
                f"announced {command.version!r}"
            )
        return bundle

    def _target_robot(self, command: TransferCommand, bundle: Bundle) -> str:
        robots = self.robots
        if command.robot is not None:
            if command.robot not in robots:
                raise OtaError(
                    f"robot {command.robot!r} is not on this device (it has {', '.join(robots)})"
                )
            return command.robot
        if bundle.manifest.robot in robots:
            return bundle.manifest.robot
        if len(robots) == 1:
            return next(iter(robots))
        raise OtaError(
            f"bundle is for robot {bundle.manifest.robot!r}, which is not on this device "
            f"({', '.join(robots)}); push with --robot"
        )

    def _check_compatible(self, robot: str, bundle: Bundle) -> None:
        runtime = self.robots[robot]
        spec, want = bundle.manifest.input, runtime.input_spec
        try:
            column_selection(runtime.source_channels, bundle)
        except ModelLoadError as err:
            raise OtaError(f"channel map mismatch: {err}") from err
        if spec.channels != want.channels:
            raise OtaError(
                f"channel map mismatch: bundle channels {list(spec.channels)}, robot {robot!r} "
                f"is scored on {list(want.channels)}"
            )
        if abs(spec.sample_rate_hz - want.sample_rate_hz) > 1e-6 * want.sample_rate_hz:
            raise OtaError(
                f"channel map mismatch: bundle expects {spec.sample_rate_hz:g} Hz, robot "
                f"{robot!r} samples at {want.sample_rate_hz:g} Hz"
            )
        if spec != want:
            raise OtaError(
                f"input spec mismatch: the bundle's segmentation/features differ from robot "
                f"{robot!r}'s ({spec.segmentation} vs {want.segmentation})"
            )
        self._check_schema_hash(robot, bundle, runtime.schema_hash)

    @staticmethod
    def _check_schema_hash(robot: str, bundle: Bundle, actual: int | None) -> None:
        declared = bundle.manifest.raw.get("input", {}).get("schema_hash")
        if declared is not None and actual is not None and int(declared) != int(actual):
            raise OtaError(
                f"channel map mismatch: bundle schema hash {int(declared):#06x}, robot "
                f"{robot!r}'s channel map has {int(actual):#06x}"
            )
