"""A model's Python stub killed under load, against a Triton of this module's own (killing stubs
would break the session's) and the real gateway: clients see 503 model_unavailable with
Retry-After meanwhile, never 502, and the gateway has Triton reload the model without anyone
acting, so it answers 200 again within 60 s. Also the steps of the ensemble (yolov3_backbone)
and of the BLS model (mtcnn_pnet), found dead by /readyz's canary with no traffic at all."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.ports import free_port
from tests.utils.processes import stubs_of
from tests.utils.promql import FAULT_ONLY, scraped_names
from tests.utils.services import gateway_process, ops_url

pytestmark = pytest.mark.integration

CLIENTS = 3
TRAFFIC_BEFORE_KILL_S = 2.0
RECOVERY_S = 60.0  # from the kill until a request sent after the first failure answers 200
TRAFFIC_AFTER_RECOVERY_S = 2.0
REQUEST_TIMEOUT_S = 30.0  # far above one 224 px resnet50 analysis here (~0.1 s): past it, a hang


@dataclass(frozen=True)
class Answer:
    sent: float  # time.monotonic() when sent
    received: float
    status: int
    errortype: str | None
    retry_after: str | None


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-repair")


@pytest.fixture(scope="module")
def own_triton(model_repository: Path, folder: Path) -> Iterator[TritonServer]:
    """A Triton for this module alone. A model with a killed stub holds up Triton's shutdown
    until --exit-timeout-secs (30 s by default)."""
    ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    server = TritonServer(
        model_repository,
        ports,
        log_file=folder / "tritonserver.log",
        extra_args=("--exit-timeout-secs=5",),
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def gateway(own_triton: TritonServer, model_repository: Path, folder: Path) -> Iterator[str]:
    env = {
        "PICMETRIC_TRITON_GRPC_URL": own_triton.grpc_url,
        # Triton's repository API is locked behind this key (core/triton_admin.py).
        "PICMETRIC_TRITON_ADMIN_KEY": own_triton.admin_key,
        "PICMETRIC_MODEL_REPOSITORY": str(model_repository),
        "PICMETRIC_DATABASE_URL": f"sqlite:///{folder / 'analyses.db'}",
        # /readyz trusts no canary's success, so the no-traffic test sees a dead stub at once.
        "PICMETRIC_CANARY_MAX_AGE_S": "0.001",
    }
    with gateway_process(env, folder / "gateway.log") as url:
        yield url


def stub_pids(server: TritonServer, model: str) -> list[int]:
    """Live Python-backend stubs that Triton started for `model`: those whose first argument is
    the model's file in the repository (…/<model>/1/model.onnx or model.py)."""
    assert server.process is not None
    return [p.pid for p in stubs_of(server.process.pid) if f"/{model}/1/model." in p.command]


def kill_stubs(server: TritonServer, model: str) -> list[int]:
    pids = stub_pids(server, model)
    assert pids, f"no stub process of {model} under Triton (pid {server.process})"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def repairs(gateway: str, model: str) -> float:
    """picmetric_model_repairs_total{model, outcome="reloaded"} from the gateway's /metrics."""
    text = httpx.get(f"{ops_url(gateway)}/metrics", timeout=10).text
    sample = f'picmetric_model_repairs_total{{model="{model}",outcome="reloaded"}} '
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(sample)]
    return values[0] if values else 0.0


def small_jpeg(photo: np.ndarray) -> bytes:
    """A 320 px wide JPEG of the photo: the load is requests, not pixels."""
    height = photo.shape[0] * 320 // photo.shape[1]
    small = cv2.resize(photo, (320, height), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


async def _analyze(client: httpx.AsyncClient, jpeg: bytes, n: int) -> Answer:
    """One uncached resnet50 analysis (each threshold differs, so the store has no answer)."""
    sent = time.monotonic()
    response = await client.post(
        "/v1/analyze",
        files={"file": ("photo.jpg", jpeg, "image/jpeg")},
        data={"models": "resnet50", "threshold": f"{0.1 + n * 1e-6:.6f}"},
    )
    body = response.json()
    return Answer(
        sent,
        time.monotonic(),
        response.status_code,
        body.get("errortype"),
        response.headers.get("Retry-After"),
    )


async def _load_with_kill(
    gateway: str, server: TritonServer, jpeg: bytes
) -> tuple[float, list[Answer]]:
    """CLIENTS clients in a loop; the resnet50 stub killed after TRAFFIC_BEFORE_KILL_S; traffic
    stops TRAFFIC_AFTER_RECOVERY_S after the first 200 sent after a failure, or RECOVERY_S after
    the kill. Returns the kill's time and every answer."""
    answers: list[Answer] = []
    stop = asyncio.Event()
    counter = iter(range(1_000_000))

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            answers.append(await _analyze(client, jpeg, next(counter)))

    async def conductor() -> float:
        try:
            await asyncio.sleep(TRAFFIC_BEFORE_KILL_S)
            killed = time.monotonic()
            kill_stubs(server, "resnet50")
            while time.monotonic() - killed < RECOVERY_S:
                await asyncio.sleep(0.2)
                if _recovered(answers) is not None:
                    await asyncio.sleep(TRAFFIC_AFTER_RECOVERY_S)
                    break
            return killed
        finally:
            stop.set()  # the clients stop also when this fails

    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=gateway, timeout=REQUEST_TIMEOUT_S, limits=limits
    ) as client:
        clients = [asyncio.create_task(client_loop(client)) for _ in range(CLIENTS)]
        killed = await conductor()
        await asyncio.gather(*clients)
    return killed, answers


def _recovered(answers: list[Answer]) -> Answer | None:
    """The first 200 to a request sent after the first failure was received."""
    failed = [a.received for a in answers if a.status != 200]
    if not failed:
        return None
    return next((a for a in answers if a.status == 200 and a.sent > min(failed)), None)


def test_model_repair_stub_killed_under_load_answers_503_then_200_again(
    gateway: str, own_triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    jpeg = small_jpeg(photos["chelsea"])
    warm = httpx.post(
        f"{gateway}/v1/analyze",
        files={"file": ("photo.jpg", jpeg, "image/jpeg")},
        data={"models": "resnet50"},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert warm.status_code == 200, warm.text
    before = repairs(gateway, "resnet50")
    old_stubs = stub_pids(own_triton, "resnet50")

    killed, answers = asyncio.run(_load_with_kill(gateway, own_triton, jpeg))

    statuses = {a.status for a in answers}
    # A dead stub is the server's fault: a 4xx here would blame the client for it.
    assert statuses <= {200, 503}, statuses
    # Answered after the kill: those that met the dead stub fail; those sent while the model is
    # reloaded wait for it and are retried once (gateway/triton/inference.py).
    failed = [a for a in answers if a.status != 200 and a.received >= killed]
    assert failed, "no request failed after the kill: the stub was not killed"
    for answer in (a for a in answers if a.status == 503):
        assert answer.errortype == "model_unavailable" and answer.retry_after, answer
    recovered = _recovered(answers)
    assert recovered is not None, f"resnet50 did not answer 200 within {RECOVERY_S} s of the kill"
    assert [a.status for a in answers if a.sent > recovered.received] == [200] * len(
        [a for a in answers if a.sent > recovered.received]
    )
    assert repairs(gateway, "resnet50") >= before + 1
    scraped = scraped_names(httpx.get(f"{ops_url(gateway)}/metrics", timeout=10).text)
    assert FAULT_ONLY <= scraped  # what the dashboard and alerts read, after a fault
    new_stubs = stub_pids(own_triton, "resnet50")
    assert new_stubs and not set(new_stubs) & set(old_stubs)
    print(
        f"\nresnet50 stub killed under {CLIENTS} clients: recovered "
        f"{recovered.received - killed:.1f} s after the kill; {len(failed)} of "
        f"{len([a for a in answers if a.received >= killed])} requests answered after the kill "
        "failed "
        f"(all 503 model_unavailable); {len(answers)} requests in all"
    )


def test_model_repair_dead_ensemble_and_bls_steps_found_by_the_canary(
    gateway: str, own_triton: TritonServer
) -> None:
    """No traffic: /readyz's canary meets the dead stubs of yolov3's backbone and of a network
    that mtcnn calls, the gateway reloads those two models, and /readyz is 200 again."""
    before = {model: repairs(gateway, model) for model in ("yolov3_backbone", "mtcnn_pnet")}
    for model in before:
        kill_stubs(own_triton, model)
    first = httpx.get(f"{ops_url(gateway)}/readyz", timeout=REQUEST_TIMEOUT_S)
    assert first.status_code == 503 and first.headers["Retry-After"]
    assert first.json()["canary_ok"] is False
    deadline = time.monotonic() + RECOVERY_S
    while (ready := httpx.get(f"{gateway}/readyz", timeout=REQUEST_TIMEOUT_S)).status_code != 200:
        assert time.monotonic() < deadline, f"/readyz not 200 within {RECOVERY_S} s: {ready.text}"
        time.sleep(0.5)
    for model, count in before.items():
        assert repairs(gateway, model) >= count + 1, model
