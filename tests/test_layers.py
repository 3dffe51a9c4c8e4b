"""Imports flow one way (ARCHITECTURE.md): the contract in pyproject.toml, checked by
import-linter over every import, function-level ones included."""

from __future__ import annotations

import shutil
import subprocess

from core.paths import PROJECT_ROOT


def test_imports_flow_down_the_layers() -> None:
    lint_imports = shutil.which("lint-imports")
    assert lint_imports, "import-linter is a test dependency: pip install -e '.[test]'"
    run = subprocess.run(
        [lint_imports, "--no-cache"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 broken" in run.stdout
