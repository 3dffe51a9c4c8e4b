"""`picmetric check-gpu`: which GPU onnxruntime and Triton can use, or plainly that none can."""

from __future__ import annotations

import shutil
import subprocess


def nvidia_gpus() -> list[str]:
    """GPU names from nvidia-smi, or [] when there is no driver or no GPU."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def report() -> list[str]:
    """Human-readable lines; the caller prints them."""
    import onnxruntime as ort

    gpus = nvidia_gpus()
    providers = ort.get_available_providers()
    lines = []
    if gpus:
        lines += [f"NVIDIA GPU: {gpu}" for gpu in gpus]
    else:
        lines.append("No NVIDIA GPU found (no nvidia-smi, or it lists none): the CPU is used.")
    gpu_providers = [
        p for p in providers if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
    ]
    if gpu_providers:
        lines.append(
            f"onnxruntime can use: {', '.join(gpu_providers)} (all: {', '.join(providers)})"
        )
    else:
        lines.append(
            f"onnxruntime here is a CPU build ({', '.join(providers)}): it runs on the CPU."
        )
    if gpus:
        lines.append(
            "Triton: the NGC image (docker compose) uses this GPU when Docker has the NVIDIA "
            "container toolkit; check with `docker run --rm --gpus all "
            "nvcr.io/nvidia/tritonserver:25.11-py3 nvidia-smi`."
        )
    else:
        lines.append("Triton: the local server (nvidia-pytriton) runs every model on the CPU.")
    return lines
