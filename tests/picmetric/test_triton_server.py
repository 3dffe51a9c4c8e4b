"""The local Triton launcher: clear errors, start-up failures with the log, clean shutdown."""

from __future__ import annotations

import os
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
from picmetric import triton_server
from picmetric.triton_server import TritonError, TritonPorts, TritonServer
from tests.utils.ports import free_port


def test_python_without_shared_libpython_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(triton_server.sysconfig, "get_config_var", lambda name: 0)
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
