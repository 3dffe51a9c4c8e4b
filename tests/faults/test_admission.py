"""Admission control against the real gateway and Triton: with the bound at 2, a burst of 3 MP
uploads gets 503 overloaded at once for what does not fit, 200 for the rest, and no timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from picmetric.triton_server import TritonServer
from tests.utils.real_photos import jpeg_bytes, real_photo
from tests.utils.services import gateway_process, ops_url

pytestmark = pytest.mark.integration

BOUND = 2
BURST = 8
# Far above one analysis of a 3 MP photo here (about 2 s alone, BENCHMARKS.md): a request still
# waiting then has hung.
REQUEST_TIMEOUT_S = 60


@dataclass(frozen=True)
class Answer:
    status: int
    seconds: float
    errortype: str | None
    retry_after: str | None


@pytest.fixture(scope="module")
def bounded_gateway(triton: TritonServer, model_repository: Path, tmp_path: Path) -> Iterator[str]:
    env = {
        "PICMETRIC_TRITON_GRPC_URL": triton.grpc_url,
        "PICMETRIC_MODEL_REPOSITORY": str(model_repository),
        "PICMETRIC_DATABASE_URL": f"sqlite:///{tmp_path / 'analyses.db'}",
        "PICMETRIC_MAX_ANALYSES_IN_FLIGHT": str(BOUND),
    }
    with gateway_process(env, tmp_path / "gateway.log") as url:
        yield url


@pytest.fixture(scope="module")
def tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("admission")


async def _upload(client: httpx.AsyncClient, jpeg: bytes, threshold: float) -> Answer:
    """One uncached analysis (each threshold differs, so the store has no answer for it)."""
    started = time.perf_counter()
    answer = await client.post(
        "/v1/analyze",
        files={"file": ("photo.jpg", jpeg, "image/jpeg")},
        data={"threshold": f"{threshold:.5f}"},
    )
    body = answer.json()
    return Answer(
        answer.status_code,
        time.perf_counter() - started,
        body.get("errortype"),
        answer.headers.get("Retry-After"),
    )


async def _burst(url: str, jpeg: bytes) -> tuple[Answer, list[Answer], Answer]:
    """One analysis alone (its time is the yardstick), then BURST at once, then one more."""
    limits = httpx.Limits(max_connections=BURST)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        alone = await _upload(client, jpeg, 0.2)
        burst = await asyncio.gather(*(_upload(client, jpeg, 0.3 + i / 1e4) for i in range(BURST)))
        after = await _upload(client, jpeg, 0.25)
    return alone, list(burst), after


def test_admission_burst_over_the_bound_is_refused_fast_and_the_rest_served(
    bounded_gateway: str,
) -> None:
    jpeg = jpeg_bytes(real_photo(3))
    alone, burst, after = asyncio.run(_burst(bounded_gateway, jpeg))
    assert alone.status == 200, alone
    refused = [a for a in burst if a.status == 503]
    served = [a for a in burst if a.status == 200]
    assert len(refused) + len(served) == BURST, burst  # nothing else, no timeout
    assert BOUND <= len(served) < BURST and refused, burst
    for answer in refused:
        assert answer.errortype == "overloaded" and answer.retry_after, answer
        assert answer.seconds < alone.seconds / 2, (answer, alone)
    assert after.status == 200, after
    metrics = httpx.get(f"{ops_url(bounded_gateway)}/metrics").text
    assert "picmetric_analyses_in_flight 0.0" in metrics
    rejected = next(
        line
        for line in metrics.splitlines()
        if line.startswith("picmetric_analyses_rejected_total")
    )
    assert float(rejected.split()[-1]) >= len(refused)
