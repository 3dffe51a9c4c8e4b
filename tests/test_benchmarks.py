"""The benchmarks stay runnable: each imports as the module `python -m benchmarks.<name>` runs and
answers --help (a benchmark itself takes minutes; BENCHMARKS.md has their numbers)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from core.paths import PROJECT_ROOT

BENCHMARKS = sorted(
    path.stem for path in (PROJECT_ROOT / "benchmarks").glob("*.py") if path.stem != "__init__"
)


def test_there_are_benchmarks() -> None:
    assert {"real_photos", "admission"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_imports(name: str) -> None:
    importlib.import_module(f"benchmarks.{name}")


@pytest.mark.parametrize("name", [n for n in BENCHMARKS if not n.startswith("_")])
def test_benchmark_answers_help(name: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "usage:" in run.stdout
