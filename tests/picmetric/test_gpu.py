"""`picmetric check-gpu` (picmetric/gpu.py) says which device onnxruntime and Triton use."""

from __future__ import annotations

import shutil
import sys

from tests.utils.commands import run_tool


def test_check_gpu_says_plainly_what_is_used() -> None:
    out = run_tool(sys.executable, "-m", "picmetric", "check-gpu")
    assert "onnxruntime" in out and "Triton" in out
    if shutil.which("nvidia-smi") is None:
        assert "the CPU is used" in out
