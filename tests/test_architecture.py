"""The shape of ``worker/``: layers enforced by import-linter, short modules and functions.

``./scripts/test.sh`` runs ``lint-imports`` on the real tree before pytest; here the contracts are shown to
*bite*: the same configuration fails on a copy of ``worker/`` with one planted upward import.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "worker"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("lint-imports")), "--config", str(cwd / "pyproject.toml")]
    env = {"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("module", "planted"),
    [
        ("engine/sampling.py", "import worker.cli.main"),  # the bottom of the engine importing the CLI
        ("store/records.py", "from worker.scoring import scorecard"),  # the store importing scoring
        ("scoring/embeddings.py", "import worker.queue.submit"),  # two independent siblings
    ],
)
def test_a_planted_upward_import_breaks_the_layer_contract(tmp_path: Path, module: str, planted: str) -> None:
    shutil.copytree(WORKER, tmp_path / "worker", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert lint_imports(tmp_path).returncode == 0, "the unchanged copy must pass"

    target = tmp_path / "worker" / module
    target.write_text(target.read_text() + f"\n{planted}  # planted\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "worker." + module.removesuffix(".py").replace("/", ".") in result.stdout


def python_files() -> list[Path]:
    return sorted(WORKER.rglob("*.py"))


def test_no_module_is_longer_than_the_limit() -> None:
    long = {str(p.relative_to(ROOT)): n for p in python_files() if (n := p.read_text().count("\n")) > MAX_MODULE_LINES}
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines: split them by what they do"


def long_functions(path: Path) -> dict[str, int]:
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = length
    return found


def test_no_function_is_longer_than_the_limit() -> None:
    long = {name: n for path in python_files() for name, n in long_functions(path).items()}
    assert long == {}, f"functions over {MAX_FUNCTION_LINES} lines: split them into named steps"
