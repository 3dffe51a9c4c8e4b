"""API keys: with PICMETRIC_API_KEYS set, /api and /v1 need X-API-Key; health stays open."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.http import deps
from gateway.http.deps import key_is_valid
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
    assert ready.status_code == 503 and ready.json() == {"ready": False}


def test_key_is_valid_matches_whole_configured_keys_only() -> None:
    keys = ["k1", "secret-key-2"]
    assert key_is_valid("k1", keys) and key_is_valid("secret-key-2", keys)
    for wrong in (None, "", "k", "k1 ", "secret-key-", "secret-key-22", "K1", "ключ"):
        assert not key_is_valid(wrong, keys), wrong
    assert not key_is_valid("k1", [])


def test_key_is_valid_compares_every_key_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each configured key goes through hmac.compare_digest, even after a match."""
    compared: list[bytes] = []
    real_compare = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real_compare(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", compare)
    assert key_is_valid("k1", ["k1", "k2", "k3"])
    assert compared == [b"k1", b"k2", b"k3"]


def test_api_keys_are_never_logged_nor_shown_in_settings(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    settings = client.app.state.services.settings  # type: ignore[attr-defined]
    assert "k1" not in repr(settings) and "k2" not in repr(settings)
    with caplog.at_level(logging.DEBUG):
        body = {"url": "https://example.com/a.jpg"}
        client.post("/v1/analyze", json=body, headers={"X-API-Key": "k2"})
        client.post("/v1/analyze", json=body, headers={"X-API-Key": "wrong-key-xyz"})
    assert caplog.records and "unauthorized" in caplog.text
    assert "k2" not in caplog.text and "wrong-key-xyz" not in caplog.text
