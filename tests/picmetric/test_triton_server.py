"""The local Triton launcher: clear errors, start-up failures with the log, clean shutdown,
restarts of a killed server with nothing of it left behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from core.model_config import ModelConfig, write_config
from core.paths import PROJECT_ROOT
from picmetric import triton_wheel
from picmetric.supervisor import RestartPolicy, TritonSupervisor
from picmetric.triton_server import TritonError, TritonPorts, TritonServer
from tests.utils.ports import free_port
from tests.utils.processes import group_of, port_free, processes, stubs_of
from tests.utils.services import wait_until
from tests.utils.tiny_models import write_gather_model


def test_python_without_shared_libpython_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(triton_wheel.sysconfig, "get_config_var", lambda name: 0)
    with pytest.raises(
        TritonError, match="not built with a shared libpython.*--enable-shared"
    ) as info:
        TritonServer().command()
    assert "\n" not in str(info.value)


@pytest.mark.integration
def test_start_failure_shows_tritons_log(tmp_path: Path) -> None:
    broken = tmp_path / "repository" / "broken"
    broken.mkdir(parents=True)
    write_config(broken, ModelConfig(name="broken", backend="no_such_backend"))
    ports = TritonPorts(free_port(), free_port(), free_port())
    server = TritonServer(tmp_path / "repository", ports, log_file=tmp_path / "triton.log")
    with pytest.raises(TritonError, match="(?s)Last lines of Triton's log:.*broken"):
        server.start(timeout=120)


@pytest.mark.integration
def test_picmetric_triton_serves_and_stops_on_sigterm(
    model_repository: Path, tmp_path: Path
) -> None:
    ports = TritonPorts(free_port(), free_port(), free_port())
    command = [
        sys.executable,
        "-m",
        "picmetric",
        "triton",
        "--repository",
        str(model_repository),
        "--http-port",
        str(ports.http),
        "--grpc-port",
        str(ports.grpc),
        "--metrics-port",
        str(ports.metrics),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not any("Serving" in line for line in lines):
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("picmetric triton did not become ready:\n" + "".join(lines))
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{ports.http}/v2/models/resnet50/ready").is_success
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    output = "".join(lines)
    assert process.returncode == 0, output
    assert "Triton is ready" in output and "Stopping Triton" in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{ports.http}/v2/health/live")


def test_a_taken_port_is_a_clear_error_before_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = TritonServer(tmp_path, TritonPorts(free_port(), port, free_port()))
        with pytest.raises(TritonError, match=f"gRPC port {port} on 127.0.0.1 is taken"):
            server.start()
    assert server.process is None


def _free_ports() -> TritonPorts:
    return TritonPorts(free_port(), free_port(), free_port())


def _ready(server: TritonServer) -> bool:
    try:
        return httpx.get(f"http://{server.http_url}/v2/health/ready", timeout=2).is_success
    except httpx.TransportError:
        return False


def _stopped_cleanly(server: TritonServer) -> None:
    assert server.process is not None and server.process.poll() is not None
    assert group_of(server.process.pid) == []
    for port in (server.ports.http, server.ports.grpc, server.ports.metrics):
        assert port_free(port), f"port {port} still answers after stop()"


def test_restart_policy_backs_off_exponentially_to_a_bound() -> None:
    policy = RestartPolicy(first_delay_s=1, max_delay_s=30)
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.integration
def test_supervisor_restarts_a_killed_server_and_kills_its_stubs(
    model_repository: Path, tmp_path: Path
) -> None:
    server = TritonServer(model_repository, _free_ports(), log_file=tmp_path / "triton.log")
    supervisor = TritonSupervisor(server, RestartPolicy(first_delay_s=0.5))
    supervisor.start()
    try:
        assert server.process is not None
        dead = server.process.pid
        assert stubs_of(dead), "the Python models should run stubs under the server"
        os.kill(dead, signal.SIGKILL)
        recovered = wait_until(
            lambda: server.process is not None and server.process.pid != dead and _ready(server),
            timeout=60,
            what="Triton's restart",
        )
        assert supervisor.restarts == 1
        assert stubs_of(dead) == [], "stubs of the killed server are still running"
        assert httpx.get(f"http://{server.http_url}/v2/models/mtcnn/ready").is_success
        print(f"Triton answered again {recovered:.1f} s after kill -9")
    finally:
        supervisor.stop()
    _stopped_cleanly(server)
    assert "=== picmetric: Triton restarted ===" in (tmp_path / "triton.log").read_text()


@pytest.mark.integration
def test_stop_kills_the_group_of_a_server_stuck_on_a_stopped_stub(
    model_repository: Path, tmp_path: Path
) -> None:
    """A model whose stub no longer runs (SIGSTOP) must not keep the server, or its ports, past
    stop()'s grace period."""
    server = TritonServer(model_repository, _free_ports(), log_file=tmp_path / "triton.log")
    server.start()
    assert server.process is not None
    try:
        stub = stubs_of(server.process.pid)[0]
        os.kill(stub.pid, signal.SIGSTOP)
        started = time.monotonic()
        server.stop(timeout=3)
        took = time.monotonic() - started
    finally:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)
    assert took < 3 + 10, f"stop() took {took:.1f} s"
    _stopped_cleanly(server)


@pytest.mark.integration
def test_supervisor_gives_up_after_max_restarts_in_a_row(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    server = TritonServer(tmp_path / "empty", _free_ports(), log_file=tmp_path / "triton.log")
    given_up = threading.Event()
    supervisor = TritonSupervisor(
        server, RestartPolicy(first_delay_s=0.1, max_restarts=1), on_give_up=given_up.set
    )
    supervisor.start()
    try:
        for _ in range(2):
            process = server.process
            assert process is not None
            wait_until(lambda: _ready(server), timeout=60, what="Triton's start")  # noqa: B023
            os.kill(process.pid, signal.SIGKILL)
            wait_until(
                lambda: server.process is not process or supervisor.gave_up.is_set(),  # noqa: B023
                timeout=30,
                what="a restart or giving up",
            )
        assert given_up.wait(10) and supervisor.gave_up.is_set()
        assert supervisor.restarts == 1
    finally:
        supervisor.stop()
    _stopped_cleanly(server)


def _picmetric_by_its_path(*args: str) -> list[str]:
    """The venv's `picmetric` script run as systemd, cron or a container's CMD would: `env -i`,
    no activated venv, no PATH. PYTHONPATH only makes the checkout under test the code that runs
    when the venv's install points elsewhere; Triton's Python stub ignores it."""
    script = Path(sys.executable).parent / "picmetric"
    return ["env", "-i", f"PYTHONPATH={PROJECT_ROOT}", str(script), *args]


def _ports_args(ports: TritonPorts) -> list[str]:
    return [
        f"--http-port={ports.http}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-port={ports.metrics}",
    ]


def _tritonserver_pid(http_port: int) -> int | None:
    return next(
        (
            p.pid
            for p in processes()
            if "bin/tritonserver" in p.command and f"--http-port={http_port}" in p.command
        ),
        None,
    )


@pytest.mark.integration
def test_picmetric_triton_by_its_path_in_a_bare_environment_loads_every_model(
    model_repository: Path, tmp_path: Path
) -> None:
    """The stubs must see the venv (onnxruntime, numpy<2), not whatever `python3` PATH names."""
    ports = _free_ports()
    command = _picmetric_by_its_path("triton", f"--repository={model_repository}")
    log = tmp_path / "picmetric.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*command, *_ports_args(ports)], stdout=out, stderr=out)
    try:
        wait_until(
            lambda: process.poll() is not None or _ready(TritonServer(ports=ports)),
            timeout=180,
            what="Triton's start by the venv's path",
            log=log,
        )
        assert process.poll() is None, log.read_text()
        index = httpx.post(f"http://127.0.0.1:{ports.http}/v2/repository/index").json()
        models = {folder.name for folder in model_repository.iterdir() if folder.is_dir()}
        assert {m["name"]: m.get("state") for m in index} == dict.fromkeys(models, "READY")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0, log.read_text()


@pytest.mark.integration
def test_picmetric_triton_gives_up_on_a_model_that_keeps_failing_and_says_why(
    tmp_path: Path,
) -> None:
    """Triton killed, then its model broken: each restart fails to load it; after
    --triton-max-restarts restarts the command exits 1 with Triton's own reason."""
    repository = tmp_path / "repository"
    write_gather_model(repository)
    ports = _free_ports()
    command = _picmetric_by_its_path("triton", f"--repository={repository}")
    process = subprocess.Popen(
        [*command, *_ports_args(ports), "--triton-max-restarts=2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("Serving" in line for line in lines), 180, "Triton's start")
        (repository / "gather" / "1" / "model.onnx").write_bytes(b"not an ONNX model")
        pid = _tritonserver_pid(ports.http)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        code = process.wait(timeout=180)
        reader.join(timeout=10)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    output = "".join(lines)
    assert code == 1, output
    assert len(re.findall(r"Triton restart \d failed", output)) == 2, output  # with its log
    assert "giving up" in output and "Gave up on Triton after 2 restart(s)" in output, output
    assert re.search(r"\| gather +\| 1 +\| UNAVAILABLE: .*INVALID_PROTOBUF", output), output
    assert _tritonserver_pid(ports.http) is None
