"""The Python models run in the NGC image's Python backend stub, whose Python is not ours:
Triton 25.11 (nvcr.io/nvidia/tritonserver:25.11-py3, Ubuntu 24.04) runs them on Python 3.12, the
local server on this environment's 3.11 (which the project's own mypy run checks). mypy, told
3.12, refuses what 3.12 removed (`configparser.SafeConfigParser`, `ssl.wrap_socket`), so code
that runs here cannot break there."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from core.paths import PROJECT_ROOT

NGC_STUB_PYTHON = "3.12"


def _mypy(*targets: str) -> subprocess.CompletedProcess[str]:
    mypy = shutil.which("mypy")
    assert mypy, "mypy is a test dependency: pip install -e '.[test]'"
    return subprocess.run(
        [mypy, "--python-version", NGC_STUB_PYTHON, "--no-incremental", *targets],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )


def test_the_python_models_type_check_on_the_ngc_stub_python() -> None:
    """Every Python model, through its typecheck/ link (pyproject.toml says why)."""
    run = _mypy("typecheck")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no issues found" in run.stdout


def test_the_check_refuses_what_python_3_12_removed(tmp_path: Path) -> None:
    older = tmp_path / "older.py"
    older.write_text("import configparser\n\nPARSER = configparser.SafeConfigParser()\n")
    run = _mypy(str(older))
    assert run.returncode != 0
    assert 'Module has no attribute "SafeConfigParser"' in run.stdout
