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
import threading
import time
from collections.abc import Callable
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
STOP_GRACE_S = 15.0  # after SIGTERM, before SIGKILL of the whole group
LEFTOVER_TIMEOUT_S = 10.0  # for killed processes to disappear


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


def process_group_members(group: int) -> list[tuple[int, str]]:
    """(pid, name) of the live processes in a process group, read from /proc; zombies, which
    hold no memory or ports, are left out."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        state, _parent, pgrp = fields.split()[:3]
        if int(pgrp) == group and state not in ("Z", "X"):
            members.append((int(entry.name), name))
    return members


def _kill_group(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass


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
            # Explicit model control: every model loads at start, and the gateway can reload one
            # whose Python stub died (gateway/repair.py) through Triton's repository API.
            "--model-control-mode=explicit",
            "--load-model=*",
            *self.extra_args,
        ]
        return args, env

    def start(self, timeout: float = 300.0) -> None:
        """Launch the server and wait until it is ready."""
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the tritonserver process, in a session of its own so that its Python-backend
        stubs share its process group and can be stopped with it. A relaunch appends to the log.
        With setpriv, Triton gets SIGTERM when the *thread* that launched it ends (Linux ties the
        parent-death signal to the thread), so launch from a thread that outlives the server."""
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
        relaunch = self.process is not None
        with self.log_file.open("ab" if relaunch else "wb") as out:
            if relaunch:
                out.write(b"\n=== picmetric: Triton restarted ===\n")
                out.flush()
            self.process = subprocess.Popen(
                _die_with_parent(args),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _check_ports_free(self) -> None:
        """Another server on our ports would answer the readiness probe in our place.
        SO_REUSEADDR, as servers use: connections of a killed server lingering in TIME_WAIT do not
        block a restart, while a listening socket still does."""
        for name, port in (
            ("HTTP", self.ports.http),
            ("gRPC", self.ports.grpc),
            ("metrics", self.ports.metrics),
        ):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((self.ports.host, port))
                except OSError as exc:
                    raise TritonError(
                        f"Triton's {name} port {port} on {self.ports.host} is taken "
                        f"({exc.strerror}); stop what uses it or pick another port."
                    ) from exc

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Wait until the launched server reports ready; TritonError (with the log's tail) when it
        exits first, or after `timeout` (it is then stopped)."""
        assert self.process is not None
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TritonError(
                    f"Triton exited with code {self.process.returncode}.\n{self.log_tail()}"
                )
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    log.info(
                        "Triton is ready after %.1f s: HTTP %s, gRPC %s, metrics %s",
                        time.perf_counter() - started,
                        self.http_url,
                        self.grpc_url,
                        self.metrics_url,
                    )
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TritonError(f"Triton was not ready after {timeout:.0f} s.\n{self.log_tail()}")

    def log_tail(self) -> str:
        lines = self.log_file.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return "Last lines of Triton's log:\n" + "\n".join(lines)

    def stop(self, timeout: float = STOP_GRACE_S) -> None:
        """SIGTERM lets Triton unload models cleanly; if it has not exited after `timeout` seconds,
        SIGKILL its whole process group. Returns once no process of the group is left (Python
        stubs included), so the ports are free when it returns."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "Triton did not exit %.0f s after SIGTERM; killing it and its model processes",
                    timeout,
                )
                _kill_group(self.process.pid)
                self.process.wait()
        self.kill_leftovers()

    def kill_leftovers(self) -> None:
        """After the server has exited: SIGKILL whatever of its process group is still running
        (a Python-backend stub outlives a killed server for minutes) and wait until it is gone."""
        assert self.process is not None and self.process.poll() is not None
        group = self.process.pid  # its own session: the group id is the server's pid
        left = process_group_members(group)
        if not left:
            return
        log.warning(
            "Killing %d process(es) that Triton (pid %d) left behind: %s",
            len(left),
            group,
            ", ".join(f"{name} (pid {pid})" for pid, name in left),
        )
        _kill_group(group)
        deadline = time.monotonic() + LEFTOVER_TIMEOUT_S
        while (left := process_group_members(group)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            log.error(
                "Processes of Triton's group %d still run %.0f s after SIGKILL: %s",
                group,
                LEFTOVER_TIMEOUT_S,
                left,
            )

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


@dataclass(frozen=True)
class RestartPolicy:
    """When a supervised Triton exits, restart it after 1, 2, 4 … at most 30 s; a server that
    stayed up `healthy_s` seconds starts the count again. After `max_restarts` restarts in a row
    without such a healthy period, give up (None: never give up)."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    healthy_s: float = 60.0
    max_restarts: int | None = None

    def delay(self, in_a_row: int) -> float:
        """Seconds to wait before the `in_a_row`-th restart in a row (1, 2, …)."""
        return float(min(self.first_delay_s * 2 ** (in_a_row - 1), self.max_delay_s))


class TritonSupervisor:
    """Keeps a TritonServer running: `start()` starts it and a watcher thread that restarts it
    whenever it exits (its left-behind stubs killed first), with `RestartPolicy`'s backoff.
    `stop()` stops the watcher and then the server, and returns when all its processes are gone.
    `restarts` counts the restarts so far; when the watcher gives up, `gave_up` is set and
    `on_give_up` is called from the watcher thread."""

    def __init__(
        self,
        server: TritonServer,
        policy: RestartPolicy | None = None,
        ready_timeout: float = 300.0,
        on_give_up: Callable[[], None] | None = None,
    ) -> None:
        self.server = server
        self.policy = policy or RestartPolicy()
        self.ready_timeout = ready_timeout
        self.on_give_up = on_give_up
        self.restarts = 0
        self.gave_up = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a launch and a stop never overlap
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        """Start the server, wait until it is ready, then watch it."""
        self.server.start(self.ready_timeout)
        self._watcher = threading.Thread(target=self._watch, name="triton-supervisor", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Stop watching, then stop the server (bounded: SIGTERM, then SIGKILL of its group)."""
        self._stopping.set()
        with self._lock:
            self.server.stop()
        if self._watcher is not None:
            self._watcher.join(timeout=LEFTOVER_TIMEOUT_S)

    def _wait_for_exit(self) -> int | None:
        """The server's exit code once it exits; None when asked to stop first."""
        process = self.server.process
        assert process is not None
        while not self._stopping.is_set():
            try:
                return process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
        return None

    def _watch(self) -> None:
        in_a_row = 0
        ready_since: float | None = time.monotonic()  # None: the last restart failed
        while (code := self._wait_for_exit()) is not None:
            with self._lock:
                if self._stopping.is_set():
                    return
                self.server.kill_leftovers()
            if ready_since is not None and time.monotonic() - ready_since >= self.policy.healthy_s:
                in_a_row = 0
            if self.policy.max_restarts is not None and in_a_row >= self.policy.max_restarts:
                log.error(
                    "Triton exited with code %d after %d restart(s) in a row that did not stay "
                    "up %.0f s; giving up.\n%s",
                    code,
                    in_a_row,
                    self.policy.healthy_s,
                    self.server.log_tail(),
                )
                self.gave_up.set()
                if self.on_give_up is not None:
                    self.on_give_up()
                return
            in_a_row += 1
            self.restarts += 1
            delay = self.policy.delay(in_a_row)
            log.warning(
                "Triton exited with code %d; restarting in %g s (restart %d)",
                code,
                delay,
                self.restarts,
            )
            if self._stopping.wait(delay):
                return
            ready_since = time.monotonic() if self._restart() else None
        # asked to stop: stop() stops the server

    def _restart(self) -> bool:
        """Launch the server again and wait until it is ready; False when that failed (the
        process has then exited, or been stopped, and the next round of the watch sees it)."""
        with self._lock:
            if self._stopping.is_set():
                return True
            try:
                self.server.launch()
            except TritonError as exc:
                log.error("Could not restart Triton: %s", exc)
                return False
        try:
            self.server.wait_ready(self.ready_timeout)
        except TritonError as exc:
            if not self._stopping.is_set():
                log.error("Triton restart %d failed: %s", self.restarts, exc)
            return False
        log.info("Triton is serving again after restart %d", self.restarts)
        return True
