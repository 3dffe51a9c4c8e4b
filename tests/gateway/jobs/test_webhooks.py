"""A job's webhook (gateway/jobs/webhooks.py) against a real HTTP server on loopback: signed as
the README says (checked here with hmac, not with the module's own `signature`), retried with
back-off after failures, given up after PICMETRIC_JOBS_WEBHOOK_ATTEMPTS tries, and never sent
to an address the URL guard forbids."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from gateway.intake.fetch import http_client
from gateway.jobs.webhooks import send_job_webhook
from gateway.settings import Settings
from tests.utils.http_server import serve_webhooks

pytestmark = pytest.mark.integration

SECRET = "whsec_0123456789abcdef"
PAYLOAD = {"id": "job_1", "state": "done", "counts": {"total": 3, "done": 2, "failed": 1}}
FAST = Settings(
    allow_private_urls=True,
    jobs_webhook_attempts=4,
    jobs_webhook_backoff_s=0.05,
    jobs_webhook_timeout_s=2,
)


def _send(url: str, settings: Settings = FAST, payload: dict[str, Any] = PAYLOAD) -> bool:
    async def run() -> bool:
        async with http_client(settings) as client:
            return await send_job_webhook(url, SECRET, payload, client, settings)

    return asyncio.run(run())


def _outcomes(outcome: str) -> float:
    return REGISTRY.get_sample_value("picmetric_job_webhooks_total", {"outcome": outcome}) or 0.0


def _verified(headers: dict[str, str], body: bytes) -> int:
    """The signature's timestamp, after checking its HMAC-SHA256 over `<t>.<body>`."""
    fields = dict(part.split("=", 1) for part in headers["Picmetric-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(fields["v1"], expected.hexdigest())
    return int(fields["t"])


def test_webhook_posts_the_payload_signed() -> None:
    before = _outcomes("delivered")
    with serve_webhooks([204]) as (url, received):
        assert _send(url)
    ((_, headers, body),) = received
    assert json.loads(body) == PAYLOAD
    assert headers["Content-Type"] == "application/json"
    assert abs(_verified(headers, body) - time.time()) < 60
    forged = body.replace(b'"done"', b'"fail"')
    with pytest.raises(AssertionError):
        _verified(headers, forged)
    assert _outcomes("delivered") == before + 1


def test_webhook_is_retried_with_growing_waits_after_500s_until_it_succeeds() -> None:
    with serve_webhooks([500, 503, 200]) as (url, received):
        assert _send(url)
    assert len(received) == 3
    arrivals = [at for at, _, _ in received]
    assert arrivals[1] - arrivals[0] >= 0.05
    assert arrivals[2] - arrivals[1] >= 0.1  # the back-off doubled
    for _, headers, body in received:  # each try signed, the body the same
        _verified(headers, body)
        assert body == received[0][2]


def test_webhook_gives_up_after_the_attempts_setting() -> None:
    before = _outcomes("failed")
    with serve_webhooks([500]) as (url, received):
        assert not _send(url)
    assert len(received) == FAST.jobs_webhook_attempts
    assert _outcomes("failed") == before + 1


def test_webhook_try_is_bounded_by_the_timeout_setting() -> None:
    settings = FAST.model_copy(update={"jobs_webhook_attempts": 2, "jobs_webhook_timeout_s": 0.3})
    with serve_webhooks([200], delay=1.5) as (url, received):
        started = time.monotonic()
        assert not _send(url, settings)
        assert time.monotonic() - started < 1.5  # two tries of 0.3 s and one wait of 0.05 s
    assert len(received) == 2


def test_webhook_to_a_private_address_is_refused_without_a_request() -> None:
    guarded = FAST.model_copy(update={"allow_private_urls": False})
    before = _outcomes("refused")
    with serve_webhooks([200]) as (url, received):
        assert not _send(url, guarded)
        assert not _send(url.replace("127.0.0.1", "localhost"), guarded)
        assert not _send(url.replace("http://", "file://"), guarded)
    assert received == []
    assert _outcomes("refused") == before + 3
