"""Run the real `tritonserver` binary from the nvidia-pytriton wheel on this machine (CPU):
start it on its ports, wait until it is ready, stop it with everything it started. Restarting
it when it dies is picmetric.supervisor's job."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from core.paths import MODEL_REPOSITORY, cache_dir
from core.triton_admin import new_admin_key, restricted_api_args
from core.triton_trace import trace_args
from picmetric.triton_wheel import (
    TritonError,
    assemble_backends,
    pytriton_dirs,
    server_environment,
)

log = logging.getLogger(__name__)


LOG_TAIL_LINES = 40
STOP_GRACE_S = 15.0  # after SIGTERM, before SIGKILL of the whole group
LEFTOVER_TIMEOUT_S = 10.0  # for killed processes to disappear


@dataclass(frozen=True)
class TritonPorts:
    """Triton's standard ports: HTTP 8000, gRPC 8001, metrics 8002."""

    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002
    host: str = "127.0.0.1"  # 0.0.0.0 to let other machines call this Triton


def die_with_parent(args: list[str]) -> list[str]:
    """Wrap the command so the server (Triton; a test's gateway) gets SIGTERM when the process
    that started it dies, even by SIGKILL (a killed test run must leave no server behind).
    util-linux's setpriv sets the parent-death signal without a preexec_fn, which is unsafe in
    threaded programs."""
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
    until it is ready; leaving the block stops it. Its admin API (core.triton_admin) is locked
    behind `admin_key`, a fresh random one unless given. It exports its spans where the OTEL_*
    variables of this process say (core/triton_trace.py)."""

    def __init__(
        self,
        repository: Path = MODEL_REPOSITORY,
        ports: TritonPorts | None = None,
        log_file: Path | None = None,
        extra_args: tuple[str, ...] = (),
        admin_key: str | None = None,
    ) -> None:
        self.repository = repository
        self.ports = ports or TritonPorts()
        self.log_file = log_file or cache_dir() / "logs" / f"tritonserver-{self.ports.http}.log"
        self.extra_args = extra_args
        self.admin_key = admin_key or new_admin_key()
        restricted_api_args(self.admin_key)  # a key Triton could not take fails here, not later
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
        server, libs = pytriton_dirs()
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
            # whose Python stub died (gateway/triton/repair.py) through Triton's repository API.
            "--model-control-mode=explicit",
            "--load-model=*",
            *restricted_api_args(self.admin_key),
            *trace_args(env),
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
                die_with_parent(args),
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
