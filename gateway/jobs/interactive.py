"""Interactive requests first. While any gateway analyses photos for its clients, every job worker
analyses at most `jobs_worker_concurrency_while_interactive` photos at once (1 by default); once
no gateway has had an analysis in flight for `jobs_interactive_linger_s`, it goes back to
`jobs_worker_concurrency`.

Triton's priority levels put an interactive request ahead of bulk ones waiting in its queues, but
on a CPU host the bulk photos already being decoded or executed share the cores with it
(BENCHMARKS.md, "Bulk jobs against the Triton plateau"): only fewer bulk photos at once keep an
interactive analysis near its time alone.

The signal is one Redis key, INTERACTIVE_KEY, which a gateway sets as soon as it admits an
analysis and again every ANNOUNCE_S while it has one in flight, each time expiring after the
linger: it exists while any gateway is busy or was within the linger, and a gateway that dies
simply stops setting it. Redis away: gateways answer as before and workers take their full
concurrency (the queue needs Redis anyway)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
import redis.asyncio

from gateway import metrics
from gateway.admission import AdmissionLimiter
from gateway.settings import Settings

log = logging.getLogger(__name__)

INTERACTIVE_KEY = "picmetric:interactive"
ANNOUNCE_S = 0.25  # how often a busy gateway sets the key again
CHECK_S = 0.1  # how often a worker with a photo waiting for its turn looks at the key
REDIS_TIMEOUT_S = 2.0  # a Redis that does not answer is away, not waited for


def _client(settings: Settings) -> redis.asyncio.Redis:
    assert settings.redis_url, "only made where jobs are (PICMETRIC_REDIS_URL)"
    return redis.asyncio.Redis.from_url(
        settings.redis_url,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
    )


class InteractiveAnnouncer:
    """The gateway's side: sets INTERACTIVE_KEY while its admission limiter has analyses in
    flight (every interactive route takes a slot there; job workers have their own limiter)."""

    def __init__(self, settings: Settings, admission: AdmissionLimiter) -> None:
        self.client = _client(settings)
        self.admission = admission
        self.linger_ms = max(1, int(settings.jobs_interactive_linger_s * 1000))
        self._redis_away = False

    async def run(self) -> None:
        """Until cancelled: at each admission, announce until none is in flight, then once more
        so that the linger counts from the last analysis's end."""
        while True:
            await self.admission.admitted.wait()
            self.admission.admitted.clear()
            while self.admission.in_flight:
                await self._announce()
                await asyncio.sleep(ANNOUNCE_S)
            await self._announce()

    async def _announce(self) -> None:
        try:
            await self.client.set(INTERACTIVE_KEY, 1, px=self.linger_ms)
        except redis.RedisError as exc:
            if not self._redis_away:
                log.warning(
                    "Cannot tell the job workers that interactive requests are running (Redis: "
                    "%s); they keep their full concurrency until Redis answers",
                    type(exc).__name__,
                )
            self._redis_away = True
            return
        if self._redis_away:
            log.info("Redis answers again; job workers yield to interactive requests again")
        self._redis_away = False

    async def close(self) -> None:
        await self.client.aclose()


@asynccontextmanager
async def announcing(settings: Settings, admission: AdmissionLimiter) -> AsyncIterator[None]:
    """The gateway's announcer running for the block, where jobs are (PICMETRIC_REDIS_URL)."""
    if not settings.redis_url:
        yield
        return
    announcer = InteractiveAnnouncer(settings, admission)
    task = asyncio.create_task(announcer.run(), name="interactive announcer")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await announcer.close()


class BulkShare:
    """A worker's side: how many photos it analyses at once, fewer while INTERACTIVE_KEY exists.
    One per worker process, used on its one event loop (no lock needed)."""

    def __init__(self, settings: Settings) -> None:
        self.client = _client(settings)
        self.full = settings.jobs_worker_concurrency
        self.while_interactive = min(settings.jobs_worker_concurrency_while_interactive, self.full)
        self.in_flight = 0
        self._interactive = False
        self._checked_at = -CHECK_S

    async def limit(self) -> int:
        """Photos this worker may analyse at once now (the key looked at once per CHECK_S)."""
        if time.monotonic() - self._checked_at >= CHECK_S:
            try:
                self._interactive = bool(await self.client.exists(INTERACTIVE_KEY))
            except redis.RedisError:
                self._interactive = False
            self._checked_at = time.monotonic()
        share = self.while_interactive if self._interactive else self.full
        metrics.JOB_WORKER_SHARE.set(share)
        return share

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait until this worker may start another photo, and hold its place for the block."""
        # The limit first: no await between reading in_flight and counting this photo in it.
        while await self.limit() <= self.in_flight:
            await asyncio.sleep(CHECK_S)
        self.in_flight += 1
        metrics.JOB_PHOTOS_IN_FLIGHT.inc()
        try:
            yield
        finally:
            self.in_flight -= 1
            metrics.JOB_PHOTOS_IN_FLIGHT.dec()

    async def close(self) -> None:
        await self.client.aclose()
