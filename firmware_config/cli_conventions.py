"""The command-line conventions of the three rapp-edge tools (rapp-firmware, rapp-agent,
rapp-export), in one place so they cannot drift apart.

- every option's help shows its default (:class:`HelpFormatter`);
- every subcommand has a description (:func:`describe_subcommands`);
- ``--log-level {debug,info,warning,error}``, ``-v`` (= debug) and ``-q`` (= error, and no
  progress bars) are accepted before *and* after the subcommand (:func:`add_logging_flags`);
- ``--version``; exit status 0 success, 1 runtime failure, 2 bad input or configuration
  (:data:`EXIT_STATUS_EPILOG`).

It lives in firmware_config because that is the package the other two build on and it imports
neither of them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import PurePath
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
EXIT_FAILURE = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT
EXIT_STATUS_EPILOG = "exit status: 0 success, 1 runtime failure, 2 bad input or configuration"
DISTRIBUTION = "rapp-edge"


def _has_no_default(value: object) -> bool:
    return value is None or value is False or value is argparse.SUPPRESS or value in ([], ())


def _shown(value: object) -> str:
    if isinstance(value, list | tuple):
        return ",".join(_shown(v) for v in value)
    if isinstance(value, PurePath):
        return str(value)
    return repr(value) if isinstance(value, str) and not value else str(value)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help, unless it has no default (None, off,
    empty) or its help already explains the default in words."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or "default" in text or _has_no_default(action.default):
            return text
        shown = _shown(action.default).replace("%", "%%")  # help strings are %-formatted
        return f"{text} (default: {shown})"


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser with :class:`HelpFormatter`; subparsers inherit the class (argparse
    creates them with ``type(parent)``), so every level of a tool formats help the same way."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (name, subparser) below ``parser``, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from subparsers(sub)


def describe_subcommands(
    parser: argparse.ArgumentParser, descriptions: Mapping[str, str] | None = None
) -> None:
    """Give every subcommand a description: ``descriptions[name]`` if there is one, else
    its one-line help from the command list (so ``<tool> <command> --help`` never opens with
    nothing but a usage line)."""
    descriptions = descriptions or {}
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, sub in action.choices.items():
            text = descriptions.get(name) or sub.description or helps.get(name)
            if text:
                sub.description = text[0].upper() + text[1:]
            describe_subcommands(sub, descriptions)


class _Quiet(argparse.Action):
    """``-q``: errors only, and no progress bars (``quiet`` is what the commands read)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        namespace.log_level = "error"
        namespace.quiet = True


def _logging_group(parser: argparse.ArgumentParser, default: str) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS,
        help=f"log messages of this level and above (default: {default})",
    )
    group.add_argument(
        "-v",
        "--verbose",
        dest="log_level",
        action="store_const",
        const="debug",
        default=argparse.SUPPRESS,
        help="debug logging: the same as --log-level debug",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action=_Quiet,
        dest="quiet",
        default=argparse.SUPPRESS,
        help="errors only and no progress bars: --log-level error",
    )


def add_logging_flags(parser: argparse.ArgumentParser, default: str) -> None:
    """``--log-level``/``-v``/``-q`` on ``parser`` and on every subcommand, so they work in
    any position; the last one given wins. Afterwards ``args.log_level`` is a level name or
    None (not given) and ``args.quiet`` a bool. ``default`` is the help's description of the
    level used when none is given.

    The options default to SUPPRESS everywhere and the defaults live on the top parser only:
    argparse copies a subparser's defaults over what the top parser already parsed."""
    parser.set_defaults(log_level=None, quiet=False)
    _logging_group(parser, default)
    for _name, sub in subparsers(parser):
        _logging_group(sub, default)


def add_version_flag(parser: argparse.ArgumentParser, prog: str, version: str) -> None:
    parser.add_argument(
        "--version", action="version", version=f"{prog} {version}", help="print the version"
    )


def distribution_version() -> str:
    """The installed rapp-edge version (one number for all three tools)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the stream of the
    moment it was created (a test harness swaps stderr per test)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str) -> None:
    """Root logging to stderr at ``level`` (a name from :data:`LOG_LEVELS`). Callable again
    (e.g. once a config file names the level): it replaces only its own handler, so handlers
    others attached to the root logger stay."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())


def report_error(prog: str, command: str, err: BaseException, code: int, label: str = "") -> None:
    """One line on stderr: ``<prog> <command>: bad input: <message>`` for exit status 2
    (``label`` replaces "bad input", e.g. "configuration error"), ``…: error: …`` for 1."""
    kind = (label or "bad input") if code == EXIT_INPUT else "error"
    print(f"{prog} {command}: {kind}: {err}", file=sys.stderr)
