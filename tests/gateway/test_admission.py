"""The admission limiter: at most `limit` analyses at once, the next refused at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import ValidationError

from gateway.admission import AdmissionLimiter
from gateway.errors import Overloaded
from gateway.main import create_app
from gateway.settings import Settings
from tests.utils.ports import free_port


def _rejected() -> float:
    return REGISTRY.get_sample_value("picmetric_analyses_rejected_total") or 0.0


def test_limiter_refuses_past_its_limit_and_frees_slots() -> None:
    limiter = AdmissionLimiter(2)
    rejected = _rejected()
    with limiter.admit(), limiter.admit():
        assert limiter.in_flight == 2
        with pytest.raises(Overloaded) as refused, limiter.admit():
            pass
        assert refused.value.status_code == 503 and refused.value.errortype == "overloaded"
        assert int(refused.value.headers["Retry-After"]) > 0
        assert "PICMETRIC_MAX_ANALYSES_IN_FLIGHT" in str(refused.value)
        assert limiter.in_flight == 2
    assert limiter.in_flight == 0 and _rejected() == rejected + 1
    with limiter.admit():
        assert limiter.in_flight == 1


def test_limiter_frees_its_slot_when_the_analysis_fails() -> None:
    limiter = AdmissionLimiter(1)
    with pytest.raises(RuntimeError), limiter.admit():
        raise RuntimeError("analysis failed")
    assert limiter.in_flight == 0


def test_limiter_refuses_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AdmissionLimiter(0)


def test_settings_max_analyses_in_flight_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_analyses_in_flight == 4
    for nonsense in ("0", "-1", "lots"):
        monkeypatch.setenv("PICMETRIC_MAX_ANALYSES_IN_FLIGHT", nonsense)
        with pytest.raises(ValidationError):
            Settings()


def test_limiter_is_per_app_and_full_bound_refuses_analysis_routes_only(tmp_path: Path) -> None:
    """Two apps in one process have their own limiters; with every slot of one app taken its
    analysis routes answer 503 overloaded (in each router's shape) and health does not."""
    settings = Settings(
        triton_grpc_url=f"127.0.0.1:{free_port()}",
        database_url=f"sqlite:///{tmp_path / 'a.db'}",
        triton_timeout_s=2,
        max_analyses_in_flight=1,
    )
    with TestClient(create_app(settings)) as full, TestClient(create_app(settings)) as other:
        limiter = full.app.state.services.admission  # type: ignore[attr-defined]
        assert limiter is not other.app.state.services.admission  # type: ignore[attr-defined]
        body = {"url": "https://example.com/a.jpg"}
        with limiter.admit():
            v1 = full.post("/v1/analyze", json=body)
            assert v1.status_code == 503 and v1.json()["errortype"] == "overloaded"
            assert v1.headers["Retry-After"] == Overloaded.headers["Retry-After"]
            seed = full.post("/api", json=body)
            assert seed.status_code == 503 and seed.json()["success"] == "false"
            assert seed.json()["errortype"] == "overloaded"
            upload = full.post("/v1/images", files={"file": ("a.jpg", b"\xff\xd8\xff")})
            assert upload.status_code == 503 and upload.json()["errortype"] == "overloaded"
            assert full.get("/healthz").status_code == 200
            assert full.get("/metrics").status_code == 200
            # the other app's bound is free: it gets past admission to the missing Triton
            elsewhere = other.post("/v1/analyze", json=body)
            assert elsewhere.json()["errortype"] == "model_unavailable"
        assert limiter.in_flight == 0
        after = full.post("/v1/analyze", json=body)
        assert after.json()["errortype"] == "model_unavailable"
        assert limiter.in_flight == 0
