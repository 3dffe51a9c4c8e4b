"""`picmetric check-gpu` (picmetric/gpu.py) says which device onnxruntime and Triton use."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from tests.utils.commands import run_tool


def test_check_gpu_says_plainly_what_is_used() -> None:
    out = run_tool(sys.executable, "-m", "picmetric", "check-gpu")
    assert "onnxruntime" in out and "Triton" in out
    if shutil.which("nvidia-smi") is None:
        assert "the CPU is used" in out


def _fake_nvidia_smi(folder: Path, script: str) -> dict[str, str]:
    """An environment whose PATH finds an `nvidia-smi` that runs `script` (bash)."""
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/bash\n{script}\n")
    tool.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_check_gpu_names_each_gpu_nvidia_smi_lists(tmp_path: Path) -> None:
    rows = "NVIDIA A10G, 23028 MiB, 550.54.15\\nNVIDIA A10G, 23028 MiB, 550.54.15\\n\\n"
    env = _fake_nvidia_smi(tmp_path, f'printf "{rows}"')
    out = run_tool(sys.executable, "-m", "picmetric", "check-gpu", env=env)
    assert out.count("NVIDIA GPU: NVIDIA A10G, 23028 MiB, 550.54.15") == 2
    assert "the CPU is used" not in out
    assert "NGC image" in out


def test_check_gpu_falls_back_to_the_cpu_when_nvidia_smi_fails(tmp_path: Path) -> None:
    # What nvidia-smi does on a host whose driver is not loaded.
    env = _fake_nvidia_smi(tmp_path, 'echo "NVIDIA-SMI has failed" >&2; exit 9')
    out = run_tool(sys.executable, "-m", "picmetric", "check-gpu", env=env)
    assert "No NVIDIA GPU found" in out and "the CPU is used" in out
    assert "runs every model on the CPU" in out
