"""What every benchmark shares: the machine's description, result files, small statistics.

Every results file states the machine it was measured on (CPU model, cores, Python, library
versions, load average), because the other helpers' and CI's processes share the 2 cores and
a number without its load average cannot be compared with another run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.atomic import write_atomic
from agent.core.bundle import BundleError
from agent.core.errors import AgentError
from agent.core.errors import exit_code as agent_exit_code
from firmware_config.errors import FirmwareError
from firmware_config.simulator import SimulationError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LIBRARIES = (
    "numpy",
    "onnxruntime",
    "ai-edge-litert",
    "torch",
    "tensorflow",
    "scikit-learn",
    "paho-mqtt",
)


class BenchmarkError(RuntimeError):
    """A benchmark that cannot run (missing tool, agent that did not start, bad data)."""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def machine_info() -> dict[str, Any]:
    """CPU, cores, Python, library versions, load average and date, for every results file."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": {name: library_version(name) for name in LIBRARIES},
        "load_average_at_start": load_average(),
        "date": utc_now(),
    }


def machine_lines(info: dict[str, Any]) -> list[str]:
    """Markdown bullet lines describing ``info`` (from :func:`machine_info`)."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    return [
        f"- CPU: {info['cpu']} ({info['cores']} cores, {info['machine']}); Python {info['python']}",
        f"- {versions}",
        f"- load average (1/5/15 min) at start {info['load_average_at_start']}, at end "
        f"{info.get('load_average_at_end', '–')} — the 2 cores are shared with other work; "
        f"measured {info['date']}",
    ]


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, (json.dumps(data, indent=1, default=_jsonable) + "\n").encode())


def write_text(path: Path, text: str) -> None:
    write_atomic(path, text.encode())


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 99)) -> dict[str, float]:
    """``{"p50": …, "p99": …, "n": …}`` of ``values`` (NaN when empty)."""
    arr = np.asarray(values, dtype=np.float64)
    out: dict[str, float] = {"n": int(arr.size)}
    for q in qs:
        out[f"p{q:g}"] = float(np.percentile(arr, q)) if arr.size else float("nan")
    return out


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> list[str]:
    """A markdown table; ``align`` holds one of l/r per column (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def report_main(
    prog: str,
    out: Path,
    stem: str,
    work: Callable[[], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
    path_hint: str = "error",
) -> int:
    """Run a report-writing benchmark's ``work`` and write ``<out>/<stem>.json`` and ``.md``
    (``render``); the exit status of a command-line tool: 2 for bad input (a file that cannot
    be read — named, else ``path_hint`` —, a bad bundle or simulation), the agent's own code
    for its runtime errors, 1 for the benchmark's."""
    info = machine_info()
    try:
        report = work()
    except OSError as err:
        where = getattr(err, "filename", None) or path_hint
        print(f"{prog}: {where}: {err.strerror or err}", file=sys.stderr)
        return 2
    except (ValueError, BundleError, SimulationError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    except (AgentError, FirmwareError, BenchmarkError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return agent_exit_code(err) if isinstance(err, AgentError) else 1
    info["load_average_at_end"] = load_average()
    report = {"machine": info, **report}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", report)
    text = render(report)
    write_text(out / f"{stem}.md", text)
    print(text)
    return 0
