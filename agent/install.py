"""`rapp-agent install-unit`: the systemd unit and a starting /etc/rapp-agent, from the package.

What it lays down below ``--prefix`` (default ``/``; docs/install.md walks through the rest):

- ``etc/systemd/system/rapp-agent.service``, the packaged unit: replaced when the package's
  copy changed, since site-specific settings belong in a drop-in (``systemctl edit``);
- ``etc/rapp-agent/agent.toml`` (from one of the packaged example configs) and
  ``etc/rapp-agent/six_axis_arm.toml`` (the shipped channel map), only when missing: once
  written they are the operator's files;
- ``etc/rapp-agent/credentials/`` (0700) for the unit's ``LoadCredential=`` and
  ``etc/rapp-agent/bundles/`` for the configured model bundles.

It never writes passwords, keys or bundles. ``--dry-run`` prints the plan and changes nothing.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from agent.core.atomic import write_atomic
from agent.core.errors import AgentInputError, AgentRuntimeError

UNIT_NAME = "rapp-agent.service"
UNIT_DIR = PurePosixPath("/etc/systemd/system")
CONFIG_DIR = PurePosixPath("/etc/rapp-agent")
CHANNEL_MAP = "six_axis_arm.toml"
CREDENTIALS = "credentials"
BUNDLES = "bundles"
DEFAULT_EXAMPLE = "serial"
HELP = "install the systemd unit and a starting /etc/rapp-agent (see docs/install.md)"


class InstallInputError(AgentInputError):
    """A bad ``install-unit`` argument (unknown example, missing prefix)."""


class InstallError(AgentRuntimeError):
    """A file or directory could not be written."""


@dataclass(frozen=True)
class Step:
    """One file or directory to put in place. ``target`` is the path on the running system;
    the step writes it below the prefix. ``content`` None: a directory. ``replace``: the
    package owns the file and a changed copy replaces it."""

    target: PurePosixPath
    mode: int
    content: bytes | None = None
    replace: bool = False

    def path(self, prefix: Path) -> Path:
        return prefix / self.target.relative_to("/")


def _packaged(*parts: str) -> bytes:
    return resources.files("agent").joinpath("data", *parts).read_bytes()


def example_names() -> list[str]:
    """The packaged example configs, ``agent-<name>.toml`` → ``name``."""
    folder = resources.files("agent").joinpath("data", "examples")
    found = (re.fullmatch(r"agent-(.+)\.toml", e.name) for e in folder.iterdir() if e.is_file())
    return sorted(m.group(1) for m in found if m)


def unit_text() -> bytes:
    return _packaged("systemd", UNIT_NAME)


def exec_start(unit: bytes) -> PurePosixPath:
    """The executable the unit starts (its ``ExecStart=`` line)."""
    match = re.search(rb"^ExecStart=(\S+)", unit, flags=re.M)
    if match is None:
        raise InstallError(f"the packaged {UNIT_NAME} has no ExecStart= line")
    return PurePosixPath(match.group(1).decode())


def plan(example: str = DEFAULT_EXAMPLE) -> list[Step]:
    """Everything install-unit puts in place, in order."""
    if example not in example_names():
        raise InstallInputError(
            f"--example {example!r}: no such example config; one of {', '.join(example_names())}"
        )
    channel_map = resources.files("firmware_config").joinpath("maps", CHANNEL_MAP).read_bytes()
    return [
        Step(UNIT_DIR / UNIT_NAME, 0o644, unit_text(), replace=True),
        Step(CONFIG_DIR, 0o755),
        Step(CONFIG_DIR / "agent.toml", 0o644, _packaged("examples", f"agent-{example}.toml")),
        Step(CONFIG_DIR / CHANNEL_MAP, 0o644, channel_map),
        Step(CONFIG_DIR / CREDENTIALS, 0o700),
        Step(CONFIG_DIR / BUNDLES, 0o755),
    ]


def action(step: Step, prefix: Path) -> str:
    """What applying ``step`` would do: create, update, unchanged, keep or secure."""
    path = step.path(prefix)
    if step.content is None:
        if not path.is_dir():
            return "create"
        return "secure" if step.mode == 0o700 and path.stat().st_mode & 0o077 else "unchanged"
    if not path.exists():
        return "create"
    if not step.replace:
        return "keep"
    return "unchanged" if path.read_bytes() == step.content else "update"


def _make_dirs(path: Path, mode: int) -> None:
    # Parents we create get 0755 whatever the umask: under umask 077 an /etc/systemd/system
    # created here would be unreadable to everything but root.
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir()
        os.chmod(directory, 0o755)
    os.chmod(path, mode)


def apply(step: Step, prefix: Path, what: str) -> None:
    path = step.path(prefix)
    try:
        if step.content is None:
            if what in ("create", "secure"):
                _make_dirs(path, step.mode)
        elif what in ("create", "update"):
            if not path.parent.exists():
                _make_dirs(path.parent, 0o755)
            write_atomic(path, step.content, mode=step.mode)
    except OSError as err:
        raise InstallError(
            f"{path}: cannot write ({err.strerror or err}); run as root, or pass --prefix"
        ) from err


def next_steps(unit: bytes, prefix: Path) -> list[str]:
    """What is left to do by hand, with the paths of the running system."""
    binary = exec_start(unit)
    config = CONFIG_DIR / "agent.toml"
    lines = [
        f"edit {config}: device_id, [mqtt], robots (ports, topics, bundle paths)",
        f"MQTT password: {CONFIG_DIR / CREDENTIALS / 'mqtt-password'} (mode 0600), or a drop-in "
        "with an empty LoadCredential= for a broker without authentication",
        f"trust key: {CONFIG_DIR / 'release.key.pub'} (written by `rapp-export keygen`)",
        f"first bundle: {CONFIG_DIR / BUNDLES}/<robot>.rapp",
        f"CREDENTIALS_DIRECTORY={CONFIG_DIR / CREDENTIALS} {binary} run --config {config} --check",
        "systemctl daemon-reload && systemctl enable --now rapp-agent; journalctl -u rapp-agent -f",
    ]
    if not (prefix / binary.relative_to("/")).is_file():
        lines.insert(
            0,
            f"the unit starts {binary}, which is not installed: create the venv there "
            "(docs/install.md) or override ExecStart= in a drop-in",
        )
    return lines


def configure_parser(p: argparse.ArgumentParser) -> None:
    """The options of ``rapp-agent install-unit``."""
    p.description = p.description or HELP
    p.add_argument(
        "--prefix",
        type=Path,
        default=Path("/"),
        help="root of the target file system, e.g. a mounted image (default: /)",
    )
    p.add_argument(
        "--example",
        default=DEFAULT_EXAMPLE,
        help="example config for a missing /etc/rapp-agent/agent.toml: "
        f"{', '.join(example_names())} (default: {DEFAULT_EXAMPLE})",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")


def add_install_unit_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``rapp-agent install-unit`` as a subcommand of ``sub`` (the CLI's subparsers)."""
    p = sub.add_parser("install-unit", help=HELP)
    configure_parser(p)
    return p


def run_install_unit(args: argparse.Namespace) -> int:
    """`rapp-agent install-unit`: print and apply the plan, then the steps left to do."""
    prefix = Path(args.prefix)
    if not prefix.is_dir():
        raise InstallInputError(f"--prefix {str(prefix)!r}: no such directory")
    steps = plan(args.example)
    for step in steps:
        what = action(step, prefix)
        if not args.dry_run:
            apply(step, prefix, what)
        note = " (exists; not overwritten)" if what == "keep" else ""
        print(f"{what:<9} {step.path(prefix)}{note}")
    if args.dry_run:
        print("dry run: nothing was changed")
    print("next (docs/install.md):")
    for i, line in enumerate(next_steps(unit_text(), prefix), 1):
        print(f"  {i}. {line}")
    return 0
