"""The one way configuration tables are read and validated, by every component.

A :class:`Table` wraps one parsed TOML table: ``get`` reads a key with its type, default and
check; ``table`` opens a sub-table; ``path`` resolves a file name against the config file's
directory at parse time (so ``--check`` and ``run`` see the same absolute path); ``done``
rejects keys nobody read. Every error is a :class:`~agent.core.errors.ConfigError` that
names the key, the value and the fix (ESPHome-style). Reading never touches the file system.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.core.errors import ConfigError

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Check = Callable[[Any], str | None]


def type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


class Table:
    """Reads one TOML table, tracking which keys were used to reject unknown ones."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: must be a table (e.g. [{where}]), got {data!r}")
        self.data = data
        self.where = where
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(
        self,
        name: str,
        kind: type | tuple[type, ...],
        default: Any = ...,
        check: Check | None = None,
        fix: str = "",
    ) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if default is ...:
                raise ConfigError(f"{self.key(name)} is missing; {fix or 'add it'}")
            return default
        value = self.data[name]
        if kind in (float, (float,)) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ConfigError(
                f"{self.key(name)} = {value!r}: must be {type_name(kind)}"
                + (f"; {fix}" if fix else "")
            )
        if check is not None:
            problem = check(value)
            if problem:
                raise ConfigError(f"{self.key(name)} = {value!r}: {problem}")
        return value

    def table(self, name: str, required: bool = False) -> Table | None:
        self.seen.add(name)
        if name not in self.data:
            if required:
                raise ConfigError(f"[{self.key(name)}] is missing; add the section")
            return None
        return Table(self.data[name], self.key(name))

    def path(
        self, name: str, base_dir: Path | None, default: str = "", fix: str = ""
    ) -> Path | None:
        """A file path, made absolute against ``base_dir`` (the config file's directory);
        None when the key is absent and the default is empty."""
        value = self.get(
            name,
            str,
            default,
            check=non_empty if default == "" and name in self.data else None,
            fix=fix,
        )
        if not value:
            return None
        return resolve_path(value, base_dir)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            allowed = ", ".join(sorted(self.seen))
            place = self.where or "top level"
            raise ConfigError(
                f"{self.key(unknown[0])}: unknown key in {place}; allowed keys: {allowed} "
                "(check the spelling)"
            )


def one_of(choices: tuple[str, ...]) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def in_range(lo: float, hi: float, what: str = "") -> Check:
    def check(value: float) -> str | None:
        if lo <= value <= hi:
            return None
        return f"must be between {lo:g} and {hi:g}" + (f" ({what})" if what else "")

    return check


def identifier(value: str) -> str | None:
    if ID_PATTERN.match(value):
        return None
    return "use 1–64 letters, digits, '.', '_' or '-' (it becomes part of MQTT topics)"


def non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def str_list(table: Table, name: str, fix: str) -> tuple[str, ...]:
    values = table.get(name, list, [], fix=fix)
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{table.key(name)} = {values!r}: must be a list of strings; {fix}")
    return tuple(values)


def resolve_path(value: str, base_dir: Path | None) -> Path:
    """``value`` made absolute against ``base_dir`` (the config file's directory). Without a
    config file (a table parsed in memory) a relative path stays as given."""
    path = Path(value).expanduser()
    if path.is_absolute() or base_dir is None:
        return path
    return Path(base_dir) / path
