"""The job queue: Dramatiq's Redis broker and the one actor, which answers one photo of a job.

A message names a job and a photo's position, nothing more: what to do is in the results
database (gateway.store.jobs), so a message delivered twice or late changes nothing. Dramatiq
acknowledges a message after its actor returned; a worker that dies holding messages stops
sending heartbeats, and after `jobs_heartbeat_timeout_s` its unacknowledged messages go back to
the queue (and the workers' sweep sends again whatever stayed queued that long). The queue is
the Redis list QUEUE_KEY: its length is what KEDA scales the workers on. Redis's errors become
QueueUnavailable here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware.asyncio import AsyncIO
from starlette.concurrency import run_in_threadpool

from gateway.errors import QueueUnavailable
from gateway.settings import Settings

QUEUE_NAME = "picmetric-jobs"
NAMESPACE = "dramatiq"
QUEUE_KEY = f"{NAMESPACE}:{QUEUE_NAME}"  # the Redis list of the messages waiting (KEDA's)
ACTOR_NAME = "answer_photo"
REDIS_TIMEOUT_S = 5  # connecting to Redis, and each command: down is an error, not a hang
# A photo that failed for want of a service (Triton, the database: 503s) is tried again this many
# times by Dramatiq, backing off from 2 s to a minute; after that the workers' sweep sends it
# again once it has been queued for jobs_heartbeat_timeout_s.
RETRIES = {"max_retries": 5, "min_backoff": 2_000, "max_backoff": 60_000}

Handler = Callable[[str, int], Awaitable[None]]


async def _not_here(job_id: str, position: int) -> None:
    raise RuntimeError("Job photos are answered by `picmetric worker`, not by the gateway.")


class JobQueue:
    """The broker of one process; `handler` answers a photo (the worker's; the gateway only
    sends)."""

    def __init__(self, settings: Settings, handler: Handler = _not_here) -> None:
        if not settings.redis_url:
            raise QueueUnavailable("Jobs need Redis: set PICMETRIC_REDIS_URL.")
        self.client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
        )
        self.broker = RedisBroker(
            client=self.client,
            namespace=NAMESPACE,
            heartbeat_timeout=int(settings.jobs_heartbeat_timeout_s * 1000),
        )
        self.broker.add_middleware(AsyncIO())
        self.actor: dramatiq.Actor[Any, Any] = dramatiq.Actor(
            handler,
            broker=self.broker,
            actor_name=ACTOR_NAME,
            queue_name=QUEUE_NAME,
            priority=0,
            options=RETRIES,
        )

    async def check(self) -> None:
        """QueueUnavailable unless Redis answers."""
        await self._call(self.client.ping)

    async def send(self, job_id: str, positions: Iterable[int]) -> None:
        """One message per photo."""
        positions = list(positions)
        if positions:
            await self._call(lambda: [self.actor.send(job_id, p) for p in positions])

    @staticmethod
    async def _call(fn: Callable[[], object]) -> None:
        try:
            await run_in_threadpool(fn)
        except (redis.RedisError, dramatiq.errors.BrokerConnectionError) as exc:
            raise QueueUnavailable(
                f"The job queue (Redis, PICMETRIC_REDIS_URL) is unreachable "
                f"({type(exc).__name__}). Retry in a few seconds."
            ) from exc

    def close(self) -> None:
        self.broker.close()
