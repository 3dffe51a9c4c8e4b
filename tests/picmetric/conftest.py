"""Fixtures of the command line's tests: the CPU stand-in backend's module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from picmetric.triton_wheel import BACKENDS_SOURCE


@pytest.fixture(scope="module")
def backend() -> object:
    """The backend's model.py, importable because pb_utils is a plain Python file in the wheel."""
    import pytriton

    sys.path.insert(0, str(Path(pytriton.__file__).parent / "tritonserver/backends/python"))
    sys.path.insert(0, str(BACKENDS_SOURCE / "onnxruntime"))
    try:
        import model

        return model
    finally:
        del sys.path[:2]
