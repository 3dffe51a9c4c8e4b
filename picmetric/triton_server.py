"""Run the real `tritonserver` binary from the nvidia-pytriton wheel on this machine (CPU),
with a backend directory assembled for the running interpreter."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from core.paths import (
    MODEL_REPOSITORY,
    PROJECT_ROOT,
    cache_dir,
    publish_folder,
)

log = logging.getLogger(__name__)

# Our CPU stand-in for the onnxruntime backend (see its module docstring).
BACKENDS_SOURCE = Path(__file__).resolve().parent / "backends"

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
LOG_TAIL_LINES = 40


class TritonError(RuntimeError):
    """Triton could not be found, prepared or started."""


@dataclass(frozen=True)
class TritonPorts:
    """Triton's standard ports: HTTP 8000, gRPC 8001, metrics 8002."""

    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002
    host: str = "127.0.0.1"  # 0.0.0.0 to let other machines call this Triton


def _pytriton_dirs() -> tuple[Path, Path]:
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


def _die_with_parent(args: list[str]) -> list[str]:
    """Wrap the command so Triton gets SIGTERM when the process that started it dies, even by
    SIGKILL (a killed test run must leave no server behind). util-linux's setpriv sets the
    parent-death signal without a preexec_fn, which is unsafe in threaded programs."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *args] if setpriv else args


class TritonServer:
    """A local tritonserver process: `with TritonServer(...) as server:` starts it and waits
    until it is ready; leaving the block stops it."""

    def __init__(
        self,
        repository: Path = MODEL_REPOSITORY,
        ports: TritonPorts | None = None,
        log_file: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.repository = repository
        self.ports = ports or TritonPorts()
        self.log_file = log_file or cache_dir() / "logs" / f"tritonserver-{self.ports.http}.log"
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """Where clients on this machine reach the server."""
        return "127.0.0.1" if self.ports.host in ("0.0.0.0", "::") else self.ports.host

    @property
    def http_url(self) -> str:
        return f"{self.address}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self.address}:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}:{self.ports.metrics}/metrics"

    def command(self) -> tuple[list[str], dict[str, str]]:
        server, libs = _pytriton_dirs()
        env = server_environment(libs)
        args = [
            str(server / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={assemble_backends(server)}",
            f"--http-address={self.ports.host}",
            f"--grpc-address={self.ports.host}",
            f"--metrics-address={self.ports.host}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--exit-on-error=true",
            *self.extra_args,
        ]
        return args, env

    def start(self, timeout: float = 300.0) -> None:
        self._check_ports_free()
        args, env = self.command()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log.info(
            "Starting Triton on HTTP %d, gRPC %d, metrics %d (log: %s)",
            self.ports.http,
            self.ports.grpc,
            self.ports.metrics,
            self.log_file,
        )
        with self.log_file.open("wb") as out:
            self.process = subprocess.Popen(
                _die_with_parent(args),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = time.perf_counter()
        self._wait_ready(timeout)
        log.info(
            "Triton is ready after %.1f s: HTTP %s, gRPC %s, metrics %s",
            time.perf_counter() - started,
            self.http_url,
            self.grpc_url,
            self.metrics_url,
        )

    def _check_ports_free(self) -> None:
        """Another server on our ports would answer the readiness probe in our place."""
        for name, port in (
            ("HTTP", self.ports.http),
            ("gRPC", self.ports.grpc),
            ("metrics", self.ports.metrics),
        ):
            with socket.socket() as probe:
                try:
                    probe.bind((self.ports.host, port))
                except OSError as exc:
                    raise TritonError(
                        f"Triton's {name} port {port} on {self.ports.host} is taken "
                        f"({exc.strerror}); stop what uses it or pick another port."
                    ) from exc

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TritonError(
                    f"Triton exited with code {self.process.returncode}.\n{self.log_tail()}"
                )
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TritonError(f"Triton was not ready after {timeout:.0f} s.\n{self.log_tail()}")

    def log_tail(self) -> str:
        lines = self.log_file.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return "Last lines of Triton's log:\n" + "\n".join(lines)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM lets Triton unload models cleanly; SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
