"""SIGTERM to `picmetric gateway` while it runs an analysis: the port refuses new connections at
once, the analysis in flight still answers 200, and then the process exits, bounded
(uvicorn's graceful shutdown, PICMETRIC_SHUTDOWN_TIMEOUT_S)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from picmetric.triton_server import TritonServer
from tests.utils.ports import free_port
from tests.utils.real_photos import jpeg_bytes, real_photo
from tests.utils.services import wait_until

pytestmark = pytest.mark.integration

SHUTDOWN_TIMEOUT_S = 30
REQUEST_TIMEOUT_S = 60


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).is_success
    except httpx.TransportError:
        return False


def test_sigterm_to_the_gateway_finishes_the_analysis_in_flight_and_takes_no_new_one(
    triton: TritonServer, model_repository: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PICMETRIC_TRITON_GRPC_URL": triton.grpc_url,
        "PICMETRIC_MODEL_REPOSITORY": str(model_repository),
        "PICMETRIC_DATABASE_URL": f"sqlite:///{tmp_path / 'analyses.db'}",
        "PICMETRIC_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S),
        "PICMETRIC_OPS_PORT": str(free_port()),
    }
    log = tmp_path / "gateway.log"
    command = [sys.executable, "-m", "picmetric", "gateway", "--port", str(port)]
    with log.open("wb") as out:
        gateway = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    photo = jpeg_bytes(real_photo(6))  # MTCNN at full resolution: seconds here
    answers: list[httpx.Response | Exception] = []

    def analyze() -> None:
        try:
            answers.append(
                httpx.post(
                    f"{url}/v1/analyze",
                    files={"file": ("photo.jpg", photo, "image/jpeg")},
                    timeout=REQUEST_TIMEOUT_S,
                )
            )
        except httpx.HTTPError as exc:
            answers.append(exc)

    try:
        wait_until(lambda: _ready(f"{url}/readyz"), 120, "the gateway's readiness", log)
        in_flight = threading.Thread(target=analyze)
        started = time.monotonic()
        in_flight.start()
        time.sleep(0.5)
        gateway.send_signal(signal.SIGTERM)
        term = time.monotonic()
        time.sleep(0.5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=5)
        in_flight.join(REQUEST_TIMEOUT_S)
        answered = time.monotonic()
        code = gateway.wait(SHUTDOWN_TIMEOUT_S + 10)
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()
    (answer,) = answers
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 200, answer.text
    assert answered > term, "the analysis ended before the SIGTERM: nothing was in flight"
    # uvicorn raises the signal again once it has shut down: killed by SIGTERM, but cleanly
    assert code == -signal.SIGTERM, log.read_text()[-3000:]
    assert "Finished server process" in log.read_text()
    print(
        f"\nSIGTERM to the gateway {term - started:.1f} s into an analysis: new connections "
        f"refused, the analysis answered 200 {answered - term:.1f} s after the signal, the "
        "process exited by the signal once done"
    )
