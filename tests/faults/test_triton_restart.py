"""`picmetric serve` (Triton + the gateway in one process) under a little load: `kill -9` of
tritonserver gives 503s with Retry-After meanwhile, the launcher restarts Triton and the gateway
answers 200 again within 60 s, no stub of the killed server survives; SIGTERM to serve while a
model's stub is stuck returns, bounded, only once Triton's ports are free."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from picmetric.triton_server import STOP_GRACE_S
from tests.utils.load import Load
from tests.utils.ports import free_port
from tests.utils.processes import group_of, port_free, processes, stubs_of
from tests.utils.real_photos import jpeg_bytes, real_photo
from tests.utils.services import wait_until

pytestmark = pytest.mark.integration

CLIENTS = 3
RECOVERY_LIMIT_S = 60
# Far above one analysis of a small photo here; a request still waiting then has hung.
REQUEST_TIMEOUT_S = 30
# SIGTERM to serve: uvicorn's shutdown, then Triton's grace period, then SIGKILL of its group.
STOP_LIMIT_S = STOP_GRACE_S + 20


def _tritonserver_of(serve: int) -> int | None:
    """The pid of the tritonserver that `picmetric serve` runs now."""
    for process in processes():
        if process.parent == serve and "bin/tritonserver" in process.command:
            return process.pid
    return None


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).is_success
    except httpx.TransportError:
        return False


def test_serve_restarts_a_killed_triton_under_load_and_stops_bounded(
    model_repository: Path, tmp_path: Path
) -> None:
    triton_ports = [free_port(), free_port(), free_port()]
    gateway_port = free_port()
    log = tmp_path / "serve.log"
    command = [
        sys.executable,
        "-m",
        "picmetric",
        "serve",
        "--no-jobs",  # Triton's restart is the test: no Redis and job worker beside it
        "--repository",
        str(model_repository),
        *("--http-port", str(triton_ports[0]), "--grpc-port", str(triton_ports[1])),
        *("--metrics-port", str(triton_ports[2]), "--port", str(gateway_port)),
    ]
    env = {
        **os.environ,
        "PICMETRIC_MODEL_REPOSITORY": str(model_repository),
        "PICMETRIC_DATABASE_URL": f"sqlite:///{tmp_path / 'analyses.db'}",
        "PICMETRIC_OPS_PORT": str(free_port()),
    }
    gateway = f"http://127.0.0.1:{gateway_port}"
    with log.open("wb") as out:
        serve = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _ready(f"{gateway}/readyz"), 240, "serve's readiness", log)
        killed_pid = _tritonserver_of(serve.pid)
        assert killed_pid is not None and stubs_of(killed_pid)

        with Load(gateway, jpeg_bytes(real_photo(0.3)), CLIENTS, REQUEST_TIMEOUT_S) as load:
            wait_until(lambda: load.first_success_sent_after(0), 60, "a first analysis", log)
            os.kill(killed_pid, signal.SIGKILL)
            killed = time.monotonic()
            triton_back = wait_until(
                lambda: (
                    _tritonserver_of(serve.pid) not in (None, killed_pid)
                    and _ready(f"http://127.0.0.1:{triton_ports[0]}/v2/health/ready")
                ),
                RECOVERY_LIMIT_S,
                "Triton's restart",
                log,
            )
            wait_until(
                lambda: load.first_success_sent_after(killed), RECOVERY_LIMIT_S, "a 200", log
            )
            time.sleep(2)  # a little load on the restarted server too
        first = load.first_success_sent_after(killed)
        assert first is not None
        gateway_back = first.received - killed
        assert gateway_back < RECOVERY_LIMIT_S

        assert stubs_of(killed_pid) == [], "stubs of the killed Triton are still running"
        answers = load.answers
        statuses = Counter(a.status for a in answers)
        hung = [a for a in answers if a.status is None]
        assert hung == [], hung
        # Triton's restart is the server's fault: a 4xx here would blame the client for it.
        assert set(statuses) <= {200, 503}, statuses
        for answer in answers:
            if answer.status == 503:
                assert answer.errortype and answer.retry_after, answer
        failed = [a for a in answers if a.status != 200 and a.received >= killed]
        assert "Triton exited with code -9; restarting in 1 s (restart 1)" in log.read_text()
        # The photos went through shared memory (PICMETRIC_TRITON_SHARED_MEMORY=auto, Triton on
        # loopback) on both servers: the restarted one, which had forgotten the regions, got them
        # registered again.
        assert log.read_text().count("large inputs go through shared memory") == 2

        # SIGTERM while a model is unhealthy: one stub of the new server stopped (SIGSTOP).
        new_pid = _tritonserver_of(serve.pid)
        assert new_pid is not None
        os.kill(stubs_of(new_pid)[0].pid, signal.SIGSTOP)
        stopping = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        serve.wait(STOP_LIMIT_S)
        stopped_after = time.monotonic() - stopping
        assert serve.returncode == 0, log.read_text()[-3000:]
        for port in [*triton_ports, gateway_port]:
            assert port_free(port), f"port {port} still answers after serve returned"
        assert group_of(new_pid) == [], "processes of the stopped Triton are still running"
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    print(
        f"\nkill -9 of tritonserver under {CLIENTS} clients: Triton ready again after "
        f"{triton_back:.1f} s, first 200 from the gateway after {gateway_back:.1f} s; "
        f"{len(failed)} of {len(answers)} requests failed around it (503, clients retrying every "
        f"0.2 s); statuses {dict(statuses)}; slowest answer "
        f"{max(a.seconds for a in answers):.1f} s; "
        f"SIGTERM to serve with a stuck stub returned after {stopped_after:.1f} s"
    )
