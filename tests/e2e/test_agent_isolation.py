"""The agent runs without the exporter's heavy dependencies (SPEC §2)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "onnx", "onnxscript", "tensorflow", "exporter")

BLOCKER = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {forbidden!r}:
            raise ImportError('blocked in this test: ' + name)
sys.meta_path.insert(0, Block())
"""


def test_agent_sources_never_import_heavy_packages():
    for path in (ROOT / "agent").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path}: imports {name}"


def test_agent_scores_a_bundle_with_heavy_packages_blocked(bundle_path, recordings, tmp_path):
    """`import agent` and a full offline score, with torch/onnx/tensorflow unimportable."""
    code = BLOCKER.format(forbidden=set(FORBIDDEN)) + (
        "import agent, agent.cli, agent.core.scoring, agent.core.bundle, agent.core.features\n"
        "from agent.cli import main\n"
        f"sys.exit(main(['score', '--bundle', {str(bundle_path)!r}, '--input', "
        f"{str(recordings['test'])!r}, '--out', {str(tmp_path / 's.csv')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "s.csv").read_text().count("\n") > 10
