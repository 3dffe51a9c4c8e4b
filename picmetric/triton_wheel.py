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

from core.paths import PROJECT_ROOT, cache_dir, publish_folder

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
            "nvidia-pytriton is not installed; run ./bootstrap.sh (or pip install -e .) first."
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
    """LD_LIBRARY_PATH for libpython and the wheel's libraries; PYTHONPATH so the stub sees this
    environment's packages (numpy<2, onnxruntime) and the project."""
    env = dict(os.environ)
    paths = [_python_libdir(), str(libs), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in paths if p)
    site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env["PYTHONPATH"] = os.pathsep.join([*sorted(site), str(PROJECT_ROOT)])
    return env
