"""Rate limits per API key, shared by every gateway process through Redis: the `limits`
library's moving window, counted in Redis so that three gateway pods give a key one budget, not
three. Without PICMETRIC_REDIS_URL there are no limits. Redis that does not answer lets requests
through (logged, at most once a minute): a limit is protection, not a reason to stop serving."""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from gateway.errors import RateLimited
from gateway.tenancy import owner_of

log = logging.getLogger(__name__)

# Redis answers in well under a millisecond; a request never waits longer than this on it.
REDIS_TIMEOUT_S = 0.5
WARN_EVERY_S = 60.0


def key_id(key: str) -> str:
    """The name a key's limit is set by and counted under: the first 12 hex digits of its owner
    (tenancy.owner_of, its sha256: `printf %s "$KEY" | sha256sum | cut -c1-12`), so neither Redis
    nor the settings hold a key, and an operator finds the key's analyses by the same id."""
    return owner_of(key)[:12]


class RateLimiter:
    """`check(identity)` counts one request of `identity` (a key_id, or the client's address
    where no keys are configured) and raises RateLimited when it is over its limit."""

    def __init__(self, redis_url: str, default: str, per_key: dict[str, str]) -> None:
        self.default = parse(default)
        self.per_key = {identity: parse(limit) for identity, limit in per_key.items()}
        self.storage = RedisStorage(
            redis_url.replace("redis://", "async+redis://", 1),
            wrap_exceptions=True,
            connect_timeout=REDIS_TIMEOUT_S,
            stream_timeout=REDIS_TIMEOUT_S,
        )
        self.limiter = MovingWindowRateLimiter(self.storage)
        self._warned_at = -math.inf

    def limit_for(self, identity: str) -> RateLimitItem:
        return self.per_key.get(identity, self.default)

    async def check(self, identity: str) -> None:
        item = self.limit_for(identity)
        try:
            if await self.limiter.hit(item, identity):
                return
            stats = await self.limiter.get_window_stats(item, identity)
        except StorageError as exc:
            self._warn(exc)
            return
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"Rate limit reached: {item} for this client. Retry in {wait} s, or ask the operator "
            "for a higher limit (PICMETRIC_RATE_LIMITS).",
            retry_after=wait,
        )

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("Redis did not answer (%s); requests pass without rate limits", exc)
