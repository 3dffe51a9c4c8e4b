"""Interactive requests first (gateway/jobs/interactive.py), on a real Redis: a gateway with an
analysis in flight announces it, workers then take one photo at a time, and go back to their full
concurrency once the gateway has been idle for the linger; and, end to end, a running worker's
share drops to one photo while /v1/analyze answers a client."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import httpx
import numpy as np
import pytest

from gateway.admission import AdmissionLimiter
from gateway.jobs.interactive import INTERACTIVE_KEY, BulkShare, announcing
from gateway.settings import Settings
from tests.gateway.conftest import FRESH
from tests.gateway.jobs.conftest import (
    MODELS,
    JobsEnv,
    api,
    put_photos,
    small_photos,
    wait_for_job,
    worker_process,
)
from tests.utils.ports import free_port
from tests.utils.redis import redis_servers
from tests.utils.services import wait_until

LINGER_S = 0.6


def _settings(redis_url: str, **values: object) -> Settings:
    return Settings(redis_url=redis_url, jobs_interactive_linger_s=LINGER_S, **values)


def test_a_busy_gateway_is_announced_until_the_linger_after_its_last_analysis() -> None:
    async def scenario(settings: Settings) -> list[tuple[str, bool]]:
        admission = AdmissionLimiter(4)
        share = BulkShare(settings)
        seen: list[tuple[str, bool]] = []

        async def interactive() -> bool:
            return bool(await share.client.exists(INTERACTIVE_KEY))

        async with announcing(settings, admission):
            await asyncio.sleep(0.2)
            seen.append(("idle", await interactive()))
            with admission.admit():
                await asyncio.sleep(0.05)
                seen.append(("admitted", await interactive()))
                await asyncio.sleep(3 * LINGER_S)  # held longer than the linger: announced again
                seen.append(("still in flight", await interactive()))
            await asyncio.sleep(LINGER_S / 3)
            seen.append(("just ended", await interactive()))
            await asyncio.sleep(LINGER_S * 1.5)
            seen.append(("idle for the linger", await interactive()))
        await share.close()
        return seen

    with redis_servers(appendonly=False) as redis:
        seen = asyncio.run(scenario(_settings(redis.url)))
    assert seen == [
        ("idle", False),
        ("admitted", True),
        ("still in flight", True),
        ("just ended", True),
        ("idle for the linger", False),
    ]


async def _most_at_once(share: BulkShare, photos: int) -> int:
    """The most photos that held a turn at once, of `photos` that each want one for 0.2 s."""
    most = 0

    async def photo() -> None:
        nonlocal most
        async with share.turn():
            most = max(most, share.in_flight)
            await asyncio.sleep(0.2)

    await asyncio.gather(*(photo() for _ in range(photos)))
    return most


def test_a_worker_takes_its_full_share_alone_and_one_photo_beside_interactive_requests() -> None:
    async def scenario(settings: Settings) -> tuple[int, int, int]:
        share = BulkShare(settings)
        alone = await _most_at_once(share, 8)
        await share.client.set(INTERACTIVE_KEY, 1, px=60_000)
        beside = await _most_at_once(share, 8)
        await share.client.delete(INTERACTIVE_KEY)
        await asyncio.sleep(0.2)  # past the worker's last look at the key
        again = await _most_at_once(share, 8)
        await share.close()
        return alone, beside, again

    with redis_servers(appendonly=False) as redis:
        settings = _settings(redis.url, jobs_worker_concurrency=4)
        assert asyncio.run(scenario(settings)) == (4, 1, 4)


def test_without_redis_the_gateway_answers_and_workers_keep_their_full_share(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis away (nothing listens on its port): no error reaches a client or a photo, and the
    gateway says once, in plain words, what it cannot do."""

    async def scenario(settings: Settings) -> int:
        admission = AdmissionLimiter(4)
        async with announcing(settings, admission):
            with admission.admit():
                await asyncio.sleep(0.8)
        share = BulkShare(settings)
        most = await _most_at_once(share, 6)
        await share.close()
        return most

    settings = _settings(f"redis://127.0.0.1:{free_port()}/0", jobs_worker_concurrency=3)
    assert asyncio.run(scenario(settings)) == 3
    warnings = [r.getMessage() for r in caplog.records if "job workers" in r.getMessage()]
    assert len(warnings) == 1 and "keep their full concurrency" in warnings[0]


def _gauge(metrics: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    return None if match is None else float(match[1])


def test_a_running_worker_yields_to_v1_analyze_and_takes_its_share_back(
    jobs_env: JobsEnv, photos: dict[str, np.ndarray]
) -> None:
    """A 60-photo job runs at the worker's 4 photos at once; while one client keeps an analysis
    in flight, the worker's share is 1 photo and no more than 1 of its photos runs once those
    it had started are done; after the client stops, its share is 4 again and the job ends."""
    prefix = put_photos(
        jobs_env,
        "interactive",
        {f"i{i:02d}.jpg": data for i, data in enumerate(small_photos(photos, 60, seed=7))},
    )
    upload = small_photos(photos, 1, seed=8)[0]
    stop = threading.Event()
    samples: list[tuple[float | None, float | None]] = []
    statuses: list[int] = []

    def client_keeps_one_in_flight() -> None:
        with api(jobs_env, "bob") as bob:
            while not stop.is_set():
                files = {"file": ("i.jpg", upload, "image/jpeg")}
                data = {"models": "mtcnn"}
                answer = bob.post("/v1/analyze", files=files, data=data, headers=FRESH)
                statuses.append(answer.status_code)

    with api(jobs_env, "alice") as alice, worker_process(jobs_env, "yielding") as worker:
        body = {"source": {"s3_prefix": prefix}, "models": MODELS}
        job_id = alice.post("/v1/jobs", json=body).raise_for_status().json()["id"]

        def sample() -> tuple[float | None, float | None]:
            text = httpx.get(worker.metrics_url).text
            got = (
                _gauge(text, "picmetric_job_worker_share"),
                _gauge(text, "picmetric_job_photos_in_flight"),
            )
            samples.append(got)
            return got

        wait_until(lambda: sample() == (4.0, 4.0), 60, "the worker at 4 photos at once")
        client = threading.Thread(target=client_keeps_one_in_flight, daemon=True)
        client.start()
        try:
            wait_until(lambda: sample() == (1.0, 1.0), 60, "the worker down to 1 photo")
            beside = []
            for _ in range(10):
                time.sleep(0.3)
                beside.append(sample())
        finally:
            stop.set()
            client.join(60)
        wait_until(lambda: sample()[0] == 4.0, 30, "the worker's share back at 4")
        job = wait_for_job(alice, job_id, 180)
    assert statuses and set(statuses) == {200}
    assert [in_flight for _, in_flight in beside if in_flight is not None and in_flight > 1] == []
    assert job["state"] == "done" and job["counts"]["failed"] == 0
