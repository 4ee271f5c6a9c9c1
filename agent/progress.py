"""Progress bars on stderr for the long commands (`rapp-agent score`, `rapp-export build`).

A bar is drawn only when stderr is a terminal, ``-q`` was not given and tqdm is installed:
tqdm is an exporter dependency, not one of the agent's (its install stays small), so an
agent-only box simply shows no bar. Redirected or piped output never holds bar fragments.

Usage::

    with progress_bar(total=n, desc="scoring", unit="sample", quiet=args.quiet) as bar:
        bar.update(k)           # k more done (or: bar.advance_to(done, total))
        bar.stage("fitting")    # a bar without total: the current stage and elapsed time
        bar.write("a line")     # printed above the bar (stdout by default)
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, TextIO


class Progress:
    """No bar: only :meth:`write` prints. :func:`progress_bar` returns this when no bar can
    or should be drawn."""

    def update(self, n: int = 1) -> None:
        pass

    def advance_to(self, done: int, total: int) -> None:
        """For ``progress(done, total)`` callbacks: move to ``done`` of ``total``."""

    def stage(self, text: str) -> None:
        pass

    def write(self, text: str, file: TextIO | None = None) -> None:
        print(text, file=file or sys.stdout, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _TqdmProgress(Progress):
    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def advance_to(self, done: int, total: int) -> None:
        if self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def stage(self, text: str) -> None:
        self._bar.set_description_str(text)

    def write(self, text: str, file: TextIO | None = None) -> None:
        # tqdm clears the bar, prints the line and draws the bar again below it
        self._bar.write(text, file=file or sys.stdout)

    def close(self) -> None:
        self._bar.close()


def progress_bar(
    *,
    total: int | None,
    desc: str,
    unit: str = "it",
    quiet: bool = False,
    stream: TextIO | None = None,
) -> Progress:
    """A bar on ``stream`` (stderr) counting to ``total``, or with ``total=None`` showing the
    current stage (``desc``, then :meth:`Progress.stage`) and the elapsed time."""
    out = stream or sys.stderr
    if quiet or not _is_terminal(out):
        return Progress()
    try:
        from tqdm import tqdm
    except ImportError:
        return Progress()
    options: dict[str, Any] = {"bar_format": "{desc} [{elapsed}]"} if total is None else {}
    bar = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=total is not None,
        file=out,
        leave=False,
        dynamic_ncols=True,
        **options,
    )
    return _TqdmProgress(bar)


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
