"""The admission limiter: at most `limit` analyses at once, the next refused at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import ValidationError

from core.paths import PROJECT_ROOT
from gateway.admission import MB, AdmissionLimiter, FetchLimiter, MemoryBudget
from gateway.errors import ImageTooLarge, Overloaded, TooManyFetches
from gateway.main import create_app
from gateway.settings import Settings
from picmetric.triton_server import TritonServer
from tests.utils.http_server import serve_directory


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


@pytest.mark.integration
def test_limiter_is_per_app_and_full_bound_refuses_analysis_routes_only(
    tmp_path: Path, triton: TritonServer, model_repository: Path
) -> None:
    """Two apps in one process have their own limiters; with every slot of one app taken its
    analysis routes answer 503 overloaded (in each router's shape), once the photo is in hand,
    and health does not. The models are ready (a real Triton): without them a request is refused
    before its fetch, 503 model_unavailable (tests/gateway/http/test_auth.py)."""
    settings = Settings(
        triton_grpc_url=triton.grpc_url,
        model_repository=model_repository,
        database_url=f"sqlite:///{tmp_path / 'a.db'}",
        triton_timeout_s=2,
        max_analyses_in_flight=1,
        allow_private_urls=True,
    )
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff")
    with (
        serve_directory(tmp_path) as (base, served),
        TestClient(create_app(settings)) as full,
        TestClient(create_app(settings)) as other,
    ):
        limiter = full.app.state.services.admission  # type: ignore[attr-defined]
        assert limiter is not other.app.state.services.admission  # type: ignore[attr-defined]
        body = {"url": f"{base}/a.jpg"}
        with limiter.admit():
            v1 = full.post("/v1/analyze", json=body)
            assert v1.status_code == 503 and v1.json()["errortype"] == "overloaded"
            assert v1.headers["Retry-After"] == Overloaded.headers["Retry-After"]
            assert len(served) == 1, "refused once the photo was fetched, not before"
            seed = full.post("/api", json=body)
            assert seed.status_code == 503 and seed.json()["success"] == "false"
            assert seed.json()["errortype"] == "overloaded"
            upload = full.post("/v1/analyze", files={"file": ("a.jpg", b"\xff\xd8\xff")})
            assert upload.status_code == 503 and upload.json()["errortype"] == "overloaded"
            assert full.get("/healthz").status_code == 200
            # the other app's bound is free: it gets past admission to the photo's own refusal
            elsewhere = other.post("/v1/analyze", json=body)
            assert elsewhere.json()["errortype"] == "unsupported_image"
        assert limiter.in_flight == 0
        after = full.post("/v1/analyze", json=body)
        assert after.json()["errortype"] == "unsupported_image"
        assert limiter.in_flight == 0


def test_memory_budget_refuses_a_photo_larger_than_all_of_it_naming_the_setting() -> None:
    async def run() -> None:
        budget = MemoryBudget(100 * MB, wait_s=5)
        with pytest.raises(ImageTooLarge, match="PICMETRIC_DECODE_MEMORY_BYTES") as refused:
            async with budget.reserve(101 * MB, "this 9000x9000 TIFF"):
                pass
        assert refused.value.status_code == 413 and "9000x9000 TIFF" in str(refused.value)
        assert budget.reserved == 0

    asyncio.run(run())


def test_memory_budget_lets_a_photo_wait_briefly_then_answers_overloaded() -> None:
    """Two photos of 60 of 100 MB: the second waits until the first is done; a third that finds
    no room within `wait_s` gets 503 overloaded (Retry-After) naming the setting."""

    async def run() -> None:
        budget = MemoryBudget(100 * MB, wait_s=0.3)
        order: list[str] = []

        async def photo(name: str, hold_s: float) -> None:
            async with budget.reserve(60 * MB, name):
                order.append(f"{name} in")
                assert budget.reserved <= budget.total
                await asyncio.sleep(hold_s)
            order.append(f"{name} out")

        await asyncio.gather(photo("first", 0.1), photo("second", 0.0))
        assert order == ["first in", "first out", "second in", "second out"]

        async with budget.reserve(60 * MB, "held"):
            started = time.monotonic()
            with pytest.raises(Overloaded, match="PICMETRIC_DECODE_MEMORY_BYTES") as refused:
                async with budget.reserve(60 * MB, "late"):
                    pass
            assert 0.25 < time.monotonic() - started < 1
            assert refused.value.headers["Retry-After"]
        assert budget.reserved == 0

    asyncio.run(run())


def test_memory_budget_is_given_back_when_the_analysis_fails() -> None:
    async def run() -> None:
        budget = MemoryBudget(100 * MB, wait_s=0)
        with pytest.raises(RuntimeError):
            async with budget.reserve(80 * MB, "failing"):
                raise RuntimeError("decode failed")
        async with budget.reserve(100 * MB, "next"):
            assert budget.reserved == 100 * MB

    asyncio.run(run())


def test_settings_decode_memory_default_fits_the_charts_limit() -> None:
    """The budget plus the gateway's own footprint (0.21-0.23 GB of RSS after an analysis in
    test_decode_budget, counted here as 0.6 GB for fetch buffers and answers being written)
    stays under the Helm chart's 2 GiB memory limit for the gateway."""
    values = yaml.safe_load((PROJECT_ROOT / "deploy/helm/picmetric/values.yaml").read_text())
    limit = values["gateway"]["resources"]["limits"]["memory"]
    assert limit == "2Gi"
    assert Settings().decode_memory_bytes + 600 * MB < 2 * 1024**3


def test_settings_decode_limits_refuse_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, nonsense in (
        ("PICMETRIC_DECODE_MEMORY_BYTES", "1000"),  # under 1 MiB: not even one photo
        ("PICMETRIC_DECODE_MEMORY_BYTES", "lots"),
        ("PICMETRIC_MAX_JPEG_SCANS", "0"),
    ):
        monkeypatch.setenv(name, nonsense)
        with pytest.raises(ValidationError):
            Settings()
        monkeypatch.delenv(name)
    monkeypatch.setenv("PICMETRIC_DECODE_MEMORY_BYTES", "800000000")
    assert Settings().decode_memory_bytes == 800 * MB


def test_fetch_limiter_counts_each_key_apart_and_names_the_setting() -> None:
    fetches = FetchLimiter(2)
    with fetches.admit("alice"), fetches.admit("alice"):
        with pytest.raises(TooManyFetches, match="PICMETRIC_MAX_FETCHES_PER_KEY") as refused:
            with fetches.admit("alice"):
                pass
        assert refused.value.status_code == 429
        with fetches.admit("bob"):
            assert fetches.in_flight == {"alice": 2, "bob": 1}
    assert not fetches.in_flight and Settings().max_fetches_per_key == 8
