"""One analysis (gateway/pipeline/analysis.py) on the real gateway: a cache hit runs no model, and
the stages show in /metrics."""

from __future__ import annotations

import httpx
import pytest

from picmetric.triton_server import TritonServer
from tests.gateway.conftest import FRESH, Gateway, metric, post
from tests.utils.triton_stats import inference_count

pytestmark = pytest.mark.integration


def test_cache_hit_leaves_triton_statistics_unchanged(
    gateway: Gateway, photo_server: str, triton: TritonServer
) -> None:
    body = {"url": f"{photo_server}/astronaut.png", "models": ["resnet50"]}
    start = inference_count(triton.grpc_url, "resnet50")
    first = post(gateway, "/v1/analyze", json=body, headers=FRESH).json()
    before = inference_count(triton.grpc_url, "resnet50")
    assert before == start + 1, "no-cache runs resnet50, whatever the store holds"
    assert first["cached"] is False
    second = post(gateway, "/v1/analyze", json=body).json()
    assert inference_count(triton.grpc_url, "resnet50") == before
    assert second["cached"] is True and second["id"] == first["id"]
    assert second["results"] == first["results"]
    third = post(gateway, "/v1/analyze", json=body, headers=FRESH).json()
    assert inference_count(triton.grpc_url, "resnet50") == before + 1
    assert third["cached"] is False and third["id"] != first["id"]


def test_metrics_appear_and_move_after_a_request(gateway: Gateway, photo_server: str) -> None:
    route = {"route": "/v1/analyze", "status": "200"}
    requests = metric(gateway, "picmetric_requests_total", **route)
    fetches = metric(gateway, "picmetric_stage_duration_seconds_count", stage="fetch")
    fetched = metric(gateway, "picmetric_fetched_bytes_total", source="url")
    hits = metric(gateway, "picmetric_cache_hits_total")
    inferences = metric(gateway, "picmetric_inference_duration_seconds_count", model="resnet50")
    body = {"url": f"{photo_server}/chelsea.png"}
    for headers in (FRESH, {}):  # the second one is a cache hit
        assert post(gateway, "/v1/analyze", json=body, headers=headers).status_code == 200
    assert metric(gateway, "picmetric_requests_total", **route) == requests + 2
    assert metric(gateway, "picmetric_stage_duration_seconds_count", stage="fetch") == fetches + 2
    assert metric(gateway, "picmetric_fetched_bytes_total", source="url") > fetched
    assert metric(gateway, "picmetric_cache_hits_total") >= hits + 1
    # The first is a miss and runs resnet50 once; the cache hit runs nothing.
    ran = metric(gateway, "picmetric_inference_duration_seconds_count", model="resnet50")
    assert ran == inferences + 1
    assert "picmetric_requests_in_flight" in httpx.get(f"{gateway.ops_url}/metrics").text
