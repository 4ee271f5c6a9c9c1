"""The three command lines follow one convention: every option and subcommand explained, every
default shown, --version, and the logging flags in any position."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator

import pytest

from agent import __version__
from agent.cli import main as agent_main
from agent.cli import parser as agent_parser
from exporter.cli import main as export_main
from exporter.cli import parser as export_parser
from firmware_config.cli import build_parser as firmware_parser
from firmware_config.cli import main as firmware_main
from firmware_config.cli_conventions import HelpFormatter, subparsers

TOOLS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "rapp-agent": agent_parser,
    "rapp-export": export_parser,
    "rapp-firmware": firmware_parser,
}
MAINS = {"rapp-agent": agent_main, "rapp-export": export_main, "rapp-firmware": firmware_main}
# The least each subcommand needs to parse; a new subcommand must be added here.
MINIMAL = {
    "rapp-agent": {
        "run": ["run", "--config", "a.toml"],
        "status": ["status", "--state-dir", "state"],
        "models": ["models", "--config", "a.toml"],
        "rollback": ["rollback", "--config", "a.toml"],
        "score": ["score", "--bundle", "b.rapp", "--input", "r.csv", "--out", "s.csv"],
        "demo": ["demo"],
        "install-unit": ["install-unit", "--dry-run"],
    },
    "rapp-export": {
        "train": ["train", "--data", "d.csv", "--channels", "J1", "--out", "model"],
        "build": ["build", "--model", "model", "--calibration", "c.csv", "--out", "b.rapp"],
        "keygen": ["keygen", "--out", "release.key"],
        "sign": ["sign", "--bundle", "b.rapp", "--key", "release.key"],
        "push": ["push", "--bundle", "b.rapp", "--broker", "h:1", "--device", "d"],
        "evaluate": ["evaluate", "--bundle", "b.rapp", "--data", "d.csv"],
        "retrain": ["retrain", "--bundle", "b", "--model", "m", "--capture", "c", "--out", "o"],
        "merge": ["merge", "--member", "a.rapp", "ma", "--member", "b.rapp", "mb", "--out", "o"],
    },
    "rapp-firmware": {
        "header": ["header"],
        "simulate": ["simulate", "--out", "s.csv"],
        "emulate": ["emulate", "--port", "loop://"],
        "golden": ["golden"],
    },
}
CASES = [(tool, command) for tool, commands in MINIMAL.items() for command in commands]


def every_parser(tool: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    top = TOOLS[tool]()
    yield tool, top
    for name, sub in subparsers(top):
        yield f"{tool} {name}", sub


def options(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            yield action


def _meaningful(default: object) -> bool:
    return default not in (None, False, argparse.SUPPRESS, [], ())


@pytest.mark.parametrize("tool", TOOLS)
def test_every_option_of_every_parser_has_help_text(tool: str) -> None:
    missing = [
        f"{where} {action.option_strings[-1]}"
        for where, parser in every_parser(tool)
        for action in options(parser)
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS
    ]
    assert missing == [], f"options without help text: {missing}"


@pytest.mark.parametrize("tool", TOOLS)
def test_every_default_is_shown_and_every_subcommand_described(tool: str) -> None:
    for where, parser in every_parser(tool):
        assert parser.formatter_class is HelpFormatter, where
        assert (parser.description or "").strip(), f"{where}: no description"
        formatter = parser._get_formatter()
        for action in options(parser):
            if _meaningful(action.default):
                shown = formatter._get_help_string(action) or ""
                assert "default" in shown, f"{where} {action.option_strings[-1]}: {shown!r}"
        text = parser.format_help()
        assert not re.search(r"issue\s*#?\d|SPEC\s*§", text), f"{where} mentions an issue: {text}"


@pytest.mark.parametrize("tool", TOOLS)
def test_version(tool: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        MAINS[tool](["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"{tool} {__version__}"


def test_header_map_is_optional_with_the_builtin_default(capsys) -> None:
    assert firmware_main(["header"]) == 0
    assert "#define RAPP_CHANNEL_COUNT 6u" in capsys.readouterr().out


@pytest.mark.parametrize("tool", TOOLS)
def test_the_flag_positions_below_cover_every_subcommand(tool: str) -> None:
    assert {name for name, _ in subparsers(TOOLS[tool]())} == set(MINIMAL[tool])


@pytest.mark.parametrize(("tool", "command"), CASES)
def test_logging_flags_before_and_after_the_subcommand(tool: str, command: str) -> None:
    argv = MINIMAL[tool][command]

    def parsed(*args: str) -> tuple[str | None, bool]:
        ns = TOOLS[tool]().parse_args(list(args))
        assert ns.command == command
        return ns.log_level, ns.quiet

    assert parsed(*argv) == (None, False)
    assert parsed("-v", *argv) == parsed(*argv, "-v") == parsed(*argv, "--verbose") == (
        "debug", False
    )  # fmt: skip
    assert parsed("-q", *argv) == parsed(*argv, "-q") == parsed(*argv, "--quiet") == (
        "error", True
    )  # fmt: skip
    assert parsed("--log-level", "info", *argv) == parsed(*argv, "--log-level", "info")
    assert parsed("--log-level", "info", *argv)[0] == "info"
    # the last one given wins, wherever it is
    assert parsed("--log-level", "info", *argv, "-v")[0] == "debug"
    assert parsed("-v", *argv, "--log-level", "warning")[0] == "warning"


@pytest.mark.parametrize("tool", TOOLS)
def test_an_unknown_log_level_is_a_usage_error(tool: str, capsys) -> None:
    argv = next(iter(MINIMAL[tool].values()))
    with pytest.raises(SystemExit) as exited:
        MAINS[tool]([*argv, "--log-level", "loud"])
    assert exited.value.code == 2
    assert "invalid choice: 'loud'" in capsys.readouterr().err
