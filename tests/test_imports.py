"""Imports flow one way (ARCHITECTURE.md: The map): the contracts in pyproject.toml, checked by
import-linter over every import, function-level ones included: which package and which gateway
sub-package may import which, and which external libraries each may use. The Python models are
named through their typecheck/ links, so that folder is on the path."""

from __future__ import annotations

import os
import shutil
import subprocess

from core.paths import PROJECT_ROOT


def test_imports_keep_every_contract() -> None:
    lint_imports = shutil.which("lint-imports")
    assert lint_imports, "import-linter is a test dependency: pip install -e '.[test]'"
    path = os.pathsep.join([str(PROJECT_ROOT), str(PROJECT_ROOT / "typecheck")])
    run = subprocess.run(
        [lint_imports, "--no-cache"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 broken" in run.stdout
