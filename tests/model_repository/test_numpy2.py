"""The NGC Triton image the deployment pins (25.x, Python 3.12) may run the Python models on
numpy 2, while this project's environment has numpy 1: the models' own tests (their pure
functions, no Triton) run again in a subprocess that imports a numpy 2 wheel first. The wheel
comes from PyPI with pip (pinned) into the project's cache, like helm's."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core.paths import PROJECT_ROOT, cache_dir

NUMPY2 = "numpy==2.2.6"
MODEL_TESTS = [
    "tests/model_repository/test_mtcnn_boxes.py",
    "tests/model_repository/test_mtcnn_pyramid.py",
    "tests/model_repository/test_mtcnn_cascade.py",
    "tests/model_repository/test_yolov3_postprocess.py",
    "tests/model_repository/test_model_common.py",
]


def _numpy2_site() -> Path:
    """A folder holding numpy 2 unpacked from its wheel (a wheel is a zip)."""
    site = cache_dir() / "tools" / NUMPY2.replace("==", "-")
    if (site / "numpy" / "__init__.py").is_file():
        return site
    download = site.with_suffix(".download")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", NUMPY2, "-d", str(download)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"pip could not download {NUMPY2} (offline?): {result.stderr[-300:]}")
    (wheel,) = download.glob("numpy-*.whl")
    with zipfile.ZipFile(wheel) as zipped:
        zipped.extractall(site)
    return site


def test_the_python_models_pure_functions_pass_their_tests_under_numpy_2() -> None:
    site = _numpy2_site()
    env = {"PYTHONPATH": f"{site}:{PROJECT_ROOT}", "PATH": "/usr/bin:/bin"}
    probe = [sys.executable, "-c", "import numpy; print(numpy.__version__)"]
    version = subprocess.run(probe, env=env, capture_output=True, text=True, check=True)
    assert version.stdout.startswith("2."), version.stdout
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *MODEL_TESTS]
    run = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
