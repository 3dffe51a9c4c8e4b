"""What the nvidia-pytriton wheel gives us: the `tritonserver` binary and its libraries, and the
backend folder we assemble for the running interpreter (its Python backend and stub, and our
CPU stand-in for the onnxruntime backend)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from core.paths import cache_dir, publish_folder

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
# Our CPU stand-in for the onnxruntime backend (see its module docstring).
BACKENDS_SOURCE = Path(__file__).resolve().parent / "backends"


class TritonError(RuntimeError):
    """Triton could not be found, prepared or started."""


def pytriton_dirs() -> tuple[Path, Path]:
    """The wheel's tritonserver folder and its bundled shared libraries."""
    try:
        import pytriton
    except ImportError as exc:
        raise TritonError(
            "nvidia-pytriton is not installed; run ./bootstrap.sh (or pip install '.[triton]') "
            "first."
        ) from exc
    server = Path(pytriton.__file__).parent / "tritonserver"
    libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    if not (server / "bin" / "tritonserver").exists():
        raise TritonError(f"No tritonserver binary in {server}; reinstall nvidia-pytriton==0.7.0.")
    return server, libs


def _python_libdir() -> str:
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise TritonError(
            f"{sys.executable} is not built with a shared libpython, which Triton's Python backend "
            "needs; use a Python built with --enable-shared (pyenv: "
            f"PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install {PYTHON_VERSION})."
        )
    return str(sysconfig.get_config_var("LIBDIR"))


def assemble_backends(server: Path) -> Path:
    """A backend directory: `python/` (backend + stub for this interpreter) and our Python-based
    `onnxruntime/`. Keyed by content and published atomically, so concurrent servers share it."""
    stub = server / "python_backend_stubs" / PYTHON_VERSION / "triton_python_backend_stub"
    if not stub.exists():
        raise TritonError(
            f"nvidia-pytriton ships no Python backend stub for Python {PYTHON_VERSION}."
        )
    files = {
        "python/libtriton_python.so": server / "backends/python/libtriton_python.so",
        "python/triton_python_backend_utils.py": server
        / "backends/python/triton_python_backend_utils.py",
        "python/triton_python_backend_stub": stub,
        "onnxruntime/model.py": BACKENDS_SOURCE / "onnxruntime/model.py",
    }
    digest = hashlib.sha256()
    for name, source in sorted(files.items()):
        digest.update(name.encode() + source.read_bytes())
    target = cache_dir() / "triton-backends" / f"py{PYTHON_VERSION}-{digest.hexdigest()[:12]}"
    if not target.exists():
        staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        for name, source in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, staging / name)
        publish_folder(staging, target)
    return target


def server_environment(libs: Path) -> dict[str, str]:
    """LD_LIBRARY_PATH for libpython and the wheel's libraries, and PATH with this interpreter's
    folder first. The Python stub embeds libpython and ignores PYTHONPATH; its interpreter finds
    its prefix, and so its site-packages, by looking up `python3` on PATH, as `python3` typed in a
    shell would (Triton starts it through `bash`). Without this folder first, a launcher run by
    its path (systemd, cron, a container's CMD, `env -i`) hands the stubs whatever `python3` PATH
    names, or none: the base interpreter, without onnxruntime and numpy<2."""
    here = Path(sys.executable).parent  # not resolved: a venv's bin/ is what names the venv
    if not (here / "python3").exists():
        raise TritonError(
            f"No python3 next to {sys.executable}; Triton's Python stub finds its packages "
            "through that name. Run picmetric from a virtual environment (./bootstrap.sh)."
        )
    env = dict(os.environ)
    paths = [_python_libdir(), str(libs), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in paths if p)
    # os.defpath when PATH is unset: Triton still needs `bash` to start a stub
    env["PATH"] = os.pathsep.join([str(here), env.get("PATH") or os.defpath])
    return env
