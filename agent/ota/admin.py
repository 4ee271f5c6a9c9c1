"""`rapp-agent models` and `rapp-agent rollback`: inspect and steer the model store by hand.

Both work on the state directory of the config (``[agent] state_dir``) without a running
agent. A running agent reads the pointer only at start, so after ``rollback`` restart it
(``systemctl restart rapp-agent``): it then serves the previous bundle — or the configured
one if there is no previous — and reports nothing new on ``ota/status`` (the rollback was an
operator's decision, printed here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agent.ota.errors import OtaError
from agent.ota.store import ModelStore


def list_models(state_dir: Path | str, robots: Mapping[str, Sequence[str]]) -> str:
    """What each robot serves: ``robots`` maps robot id → its configured bundles."""
    store = ModelStore(state_dir)
    lines = []
    for robot, configured in robots.items():
        lines.extend(_robot_lines(store, robot, configured))
    return "\n".join(lines)


def _robot_lines(store: ModelStore, robot: str, configured: Sequence[str]) -> list[str]:
    lines = [f"robot {robot}:", f"  configured: {', '.join(configured)}"]
    pointer = store.pointer(robot)
    for bundle_id, entry in sorted(pointer.items()):
        prev = entry.previous[:12] if entry.previous else "configured bundle"
        lines.append(
            f"  {bundle_id}: active {entry.active[:12]} v{entry.version or '?'} "
            f"({entry.state}, transfer {entry.transfer_id or '-'}), previous {prev}"
        )
    active = {e.active for e in pointer.values()}
    previous = {e.previous for e in pointer.values() if e.previous}
    for path in store.files(robot):
        mark = "active" if path.stem in active else "previous" if path.stem in previous else ""
        lines.append(f"  file {path.name} {path.stat().st_size} bytes {mark}".rstrip())
    if not pointer:
        lines.append("  no bundles installed over the air")
    return lines


def model_inventory(
    state_dir: Path | str, robots: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    """:func:`list_models` as data (``rapp-agent models --json``): per robot its configured
    bundles, the bundles installed over the air (pointer entries) and the stored files.
    Without ``robots``: every robot that has installed bundles, with nothing configured."""
    store = ModelStore(state_dir)
    configured = robots if robots is not None else {r: () for r in store.robots()}
    out: dict[str, Any] = {}
    for robot, names in configured.items():
        pointer = store.pointer(robot)
        active = {e.active for e in pointer.values()}
        previous = {e.previous for e in pointer.values() if e.previous}
        out[robot] = {
            "configured": list(names),
            "installed": {bid: asdict(entry) for bid, entry in sorted(pointer.items())},
            "files": [
                {
                    "name": path.name,
                    "bytes": path.stat().st_size,
                    "role": "active"
                    if path.stem in active
                    else "previous"
                    if path.stem in previous
                    else None,
                }
                for path in store.files(robot)
            ],
        }
    return out


def rollback(state_dir: Path | str, robot: str | None, bundle_id: str | None) -> str:
    """Roll ``robot``'s ``bundle_id`` back (each defaults to the only one installed)."""
    store = ModelStore(state_dir)
    if robot is None:
        robots = store.robots()
        candidates = [r for r in robots if store.pointer(r)]
        if len(candidates) != 1:
            raise OtaError(
                f"robots with installed bundles: {candidates or 'none'}; choose one with --robot"
            )
        robot = candidates[0]
    pointer = store.pointer(robot)
    if bundle_id is None:
        if len(pointer) != 1:
            raise OtaError(
                f"robot {robot!r} has installed bundles {sorted(pointer) or 'none'}; "
                "choose one with --bundle-id"
            )
        bundle_id = next(iter(pointer))
    if bundle_id not in pointer:
        raise OtaError(f"robot {robot!r} has no installed bundle {bundle_id!r}")
    restored = store.rollback(robot, bundle_id)
    target = f"installed bundle {restored.active[:12]}" if restored else "the configured bundle"
    return (
        f"robot {robot}, bundle {bundle_id}: rolled back to {target}; restart the agent "
        "(systemctl restart rapp-agent) to apply"
    )
