"""The package layering of docs/architecture.md, checked on the import statements.

Layers, bottom up: ``agent.core`` (the library both sides run) → ``agent.sources`` →
``agent.pipeline`` → ``agent.sinks`` → ``agent.ota`` → the daemon modules on top
(``agent.daemon``, ``agent.config``, ``agent.cli``, …). A module may import its own layer and
the layers below, never above. ``firmware_config`` imports nothing of agent or exporter; the
agent never imports the exporter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LAYERS = ("agent.core", "agent.sources", "agent.pipeline", "agent.sinks", "agent.ota")
# What a layer may import besides the layers below it: the package root (for __version__)
# and, for OTA, the model-loading helpers the daemon also uses.
EXTRA = {"agent.ota": ("agent.models",)}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _layer(module: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "."):
            return i
    return None


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_themselves_and_below(layer: str) -> None:
    own = LAYERS.index(layer)
    folder = ROOT / Path(*layer.split("."))
    for path in sorted(folder.rglob("*.py")):
        for name in _imports(path):
            if not name.startswith("agent.") or name in EXTRA.get(layer, ()):
                continue
            target = _layer(name)
            assert target is not None and target <= own, (
                f"{_module(path)} imports {name}: {layer} may only import "
                f"{', '.join(LAYERS[: own + 1])}"
            )


def test_firmware_config_never_imports_agent_or_exporter() -> None:
    for path in (ROOT / "firmware_config").rglob("*.py"):
        for name in _imports(path):
            assert name.split(".")[0] not in {"agent", "exporter"}, f"{path}: {name}"


def test_agent_never_imports_the_exporter() -> None:
    for path in (ROOT / "agent").rglob("*.py"):
        for name in _imports(path):
            assert name.split(".")[0] != "exporter", f"{path}: {name}"


def test_importing_the_core_loads_nothing_above_it() -> None:
    """`import agent.core` (and every module in it) pulls in no source, pipeline, sink or OTA
    module — checked in a fresh interpreter, so lazy imports count too."""
    modules = sorted(
        _module(p) for p in (ROOT / "agent" / "core").rglob("*.py") if "backends" not in p.parts
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import agent.core.backends\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['agent','sources'], ['agent','pipeline'], ['agent','sinks'], ['agent','ota']))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"agent.core loaded {out.stdout.strip()}"
