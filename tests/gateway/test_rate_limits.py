"""Rate limits per API key, shared by every gateway process through a real Redis: two gateways
give a key one budget; 429 with Retry-After past it; Redis down lets requests through."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from gateway.ratelimit import key_id
from tests.utils.redis import redis_server
from tests.utils.services import gateway_process

KEY, VIP = "key-one", "key-vip"


@pytest.fixture()
def gateways(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """Redis and two gateways sharing it (and a database); Triton is not needed: the requests
    are refused (unsupported scheme) before any inference, and still counted."""
    with ExitStack() as stack:
        redis_url = stack.enter_context(redis_server())
        env = {
            "PICMETRIC_REDIS_URL": redis_url,
            "PICMETRIC_RATE_LIMIT": "3/minute",
            "PICMETRIC_RATE_LIMITS": f"{key_id(VIP)}=5/minute",
            "PICMETRIC_API_KEYS": f"{KEY},{VIP}",
            "PICMETRIC_DATABASE_URL": f"sqlite:///{tmp_path / 'picmetric.db'}",
            "PICMETRIC_TRITON_GRPC_URL": "127.0.0.1:1",
        }
        first = stack.enter_context(gateway_process(env, tmp_path / "first.log"))
        second = stack.enter_context(gateway_process(env, tmp_path / "second.log"))
        yield first, second, redis_url


def _analyze(base: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/analyze", json={"url": "ftp://example.com/a.jpg"}, headers={"X-API-Key": key}
    )


def test_a_key_has_one_budget_across_gateways(gateways: tuple[str, str, str]) -> None:
    first, second, _ = gateways
    statuses = [_analyze(base, KEY).status_code for base in (first, second, first)]
    assert statuses == [400, 400, 400]  # refused for its scheme, counted all the same
    over = _analyze(second, KEY)
    assert over.status_code == 429, over.text
    assert over.json()["errortype"] == "rate_limited"
    assert "PICMETRIC_RATE_LIMITS" in over.json()["message"]
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    seed = httpx.post(f"{first}/api", json={"url": "ftp://x/a.jpg"}, headers={"X-API-Key": KEY})
    assert seed.status_code == 429 and seed.json()["errortype"] == "rate_limited"
    # another key has its own budget, and a key with a limit of its own uses it
    assert [_analyze(first, VIP).status_code for _ in range(5)] == [400] * 5
    assert _analyze(first, VIP).status_code == 429
    # a wrong key is refused as before, and not counted against anyone
    assert _analyze(first, "wrong").status_code == 401


def test_requests_pass_when_redis_is_down(tmp_path: Path) -> None:
    with redis_server() as redis_url:
        pass  # started and stopped: its port now refuses connections
    env = {
        "PICMETRIC_REDIS_URL": redis_url,
        "PICMETRIC_RATE_LIMIT": "1/minute",
        "PICMETRIC_DATABASE_URL": f"sqlite:///{tmp_path / 'picmetric.db'}",
        "PICMETRIC_TRITON_GRPC_URL": "127.0.0.1:1",
    }
    with gateway_process(env, tmp_path / "gateway.log") as base:
        answers = [
            httpx.post(f"{base}/v1/analyze", json={"url": "ftp://x/a.jpg"}, timeout=5)
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [400, 400, 400]
    assert "requests pass without rate limits" in (tmp_path / "gateway.log").read_text()
