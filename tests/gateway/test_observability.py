"""Observability against the running gateway and Triton: the dashboard's and the alerts' metrics
really exist, and a real Prometheus (Debian's package) scrapes both."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from picmetric.triton_server import TritonServer
from tests.gateway.conftest import FRESH, Gateway, post
from tests.utils.prometheus import prometheus_server
from tests.utils.promql import (
    FAULT_ONLY,
    GPU_ONLY,
    expressions,
    metric_names,
    recorded_names,
    scraped_names,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("gateway", ["sqlite"], indirect=True),
]


def _analyze(gateway: Gateway, photo_server: str) -> None:
    """One analysis that runs every model (inference metrics move)."""
    body = {"url": f"{photo_server}/astronaut.jpg"}
    assert post(gateway, "/v1/analyze", json=body, headers=FRESH).status_code == 200


def test_dashboard_and_alerts_read_metrics_that_exist(
    gateway: Gateway, triton: TritonServer, photo_server: str
) -> None:
    _analyze(gateway, photo_server)
    httpx.post(f"{gateway.url}/v1/analyze", json={"url": "ftp://x/y"})  # an error, counted
    exposed = scraped_names(httpx.get(f"{gateway.ops_url}/metrics").text)
    exposed |= scraped_names(httpx.get(triton.metrics_url).text)
    wanted = set().union(*(metric_names(e) for e in expressions())) - {"up"} - GPU_ONLY - FAULT_ONLY
    assert wanted, "the dashboard and alerts read no metric"
    recorded = {name for name in wanted if ":" in name}
    assert recorded <= recorded_names()  # the recording rules' series, made by Prometheus
    assert wanted - recorded - exposed == set()


@pytest.fixture
def prometheus(gateway: Gateway, triton: TritonServer, tmp_path: Path) -> Iterator[str]:
    """Debian's Prometheus scraping the gateway and Triton every second; yields its URL."""
    targets = {
        "gateway": urlsplit(gateway.ops_url).netloc,
        "triton": urlsplit(triton.metrics_url).netloc,
    }
    with prometheus_server(targets, tmp_path) as url:
        yield url


def _poll(check, timeout: float = 30) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"gave up after {timeout} s")


def _query(prometheus: str, promql: str) -> float | None:
    result = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}).json()
    series = result["data"]["result"]
    return float(series[0]["value"][1]) if series else None


def test_real_prometheus_scrapes_gateway_and_triton(
    prometheus: str, gateway: Gateway, photo_server: str
) -> None:
    def both_up() -> bool:
        targets = httpx.get(f"{prometheus}/api/v1/targets").json()["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        return health == {"gateway": "up", "triton": "up"}

    _poll(both_up)
    promql = 'sum(picmetric_requests_total{route="/v1/analyze"}) or vector(0)'
    _poll(lambda: _query(prometheus, "picmetric_requests_in_flight") is not None)
    before = _query(prometheus, promql) or 0.0
    _analyze(gateway, photo_server)
    _poll(lambda: (_query(prometheus, promql) or 0.0) > before)
    assert _query(prometheus, 'sum(nv_inference_count{model="resnet50"})') is not None
