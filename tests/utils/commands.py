"""Run a command-line tool from a test; a tool that is missing fails the test, never skips it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from core.paths import PROJECT_ROOT


def run_tool(*command: str, cwd: Path = PROJECT_ROOT, env: Mapping[str, str] | None = None) -> str:
    """Run ``command``; return its stdout. Fail the test if the tool is absent or exits non-zero."""
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} is not installed; ./bootstrap.sh test installs it")
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
