"""API keys: with PICMETRIC_API_KEYS set, /api and /v1 need X-API-Key; health stays open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.main import create_app
from gateway.settings import Settings
from tests.utils.ports import free_port


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The real app with no Triton behind it (a closed port): enough to see the key check."""
    settings = Settings(
        api_keys=["k1", "k2"],
        triton_grpc_url=f"127.0.0.1:{free_port()}",
        database_url=f"sqlite:///{tmp_path / 'a.db'}",
        triton_timeout_s=2,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_requests_without_a_valid_key_are_refused(client: TestClient) -> None:
    body = {"url": "https://example.com/a.jpg"}
    for headers in ({}, {"X-API-Key": "nope"}):
        answer = client.post("/v1/analyze", json=body, headers=headers)
        assert answer.status_code == 401 and answer.json()["errortype"] == "unauthorized"
    seed = client.post("/api", json=body)
    assert seed.status_code == 401 and seed.json()["success"] == "false"


def test_a_valid_key_passes_and_health_needs_none(client: TestClient) -> None:
    answer = client.post(
        "/v1/analyze", json={"url": "https://example.com/a.jpg"}, headers={"X-API-Key": "k2"}
    )
    assert answer.status_code == 503 and answer.json()["errortype"] == "model_unavailable"
    assert answer.headers["Retry-After"]
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["triton_live"] is False
