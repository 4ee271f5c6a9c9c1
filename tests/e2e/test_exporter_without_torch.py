"""`rapp-export` in an install without the heavy extras: `--help` and `keygen` work, `train`
says which extra to install instead of a ModuleNotFoundError traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'onnx', 'onnxscript', 'tensorflow'}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from exporter.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK, *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_help_and_keygen_need_no_torch(tmp_path: Path) -> None:
    helped = _export("--help")
    assert helped.returncode == 0, helped.stderr
    assert "train" in helped.stdout
    made = _export("keygen", "--out", str(tmp_path / "release.key"))
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "release.key.pub").is_file()


def test_train_names_the_extra_to_install(tmp_path: Path, recordings) -> None:
    result = _export(
        "train", "--data", str(recordings["train"]), "--channels", "J1", "--out", str(tmp_path)
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'rapp-edge[export]'" in result.stderr
    assert "Traceback" not in result.stderr
