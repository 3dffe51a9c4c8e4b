"""The Python models run in the NGC image's Python backend stub, whose Python is older than ours:
Triton 24.10 (nvcr.io/nvidia/tritonserver:24.10-py3, Ubuntu 22.04) runs them on Python 3.10. mypy,
told that version, refuses syntax and standard-library names that 3.10 lacks (`except*`,
`datetime.UTC`, `typing.Self`), so code that runs here on 3.11 cannot break there."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from core.paths import PROJECT_ROOT

NGC_STUB_PYTHON = "3.10"


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


def test_the_check_refuses_what_python_3_10_lacks(tmp_path: Path) -> None:
    newer = tmp_path / "newer.py"
    newer.write_text(
        "import datetime\n\n\n"
        "def stamp() -> str:\n"
        "    try:\n"
        "        return str(datetime.UTC)\n"
        "    except* ValueError:\n"
        "        return ''\n"
    )
    run = _mypy(str(newer))
    assert run.returncode != 0
    assert 'Module has no attribute "UTC"' in run.stdout
    assert "requires Python 3.11" in run.stdout
