"""Admission control, per gateway process: at most `limit` analyses in flight, past it a request is
refused at once (503 `overloaded` + Retry-After) rather than queued; an analysis is admitted once
its photo's bytes are in hand, so its slot is held for compute, never while waiting on another
server. Fetches have their own bound, per API key (429 `too_many_fetches`). And a budget of
memory for the photos being analysed, which each photo reserves by the bytes its analysis will
hold at most (its header says how many: gateway.pipeline.analysis.analysis_memory) before any pixel
is decoded."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from gateway import metrics
from gateway.errors import ImageTooLarge, Overloaded, TooManyFetches

MB = 1_000_000
# How long a photo waits for its share of the decode memory budget before 503 overloaded: about
# one analysis of a large photo on a CPU host.
MEMORY_WAIT_S = 5.0


class AdmissionLimiter:
    """Counts the analyses running in one process (one event loop, so no lock is needed)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"The admission limit must be at least 1, not {limit}.")
        self.limit = limit
        self.in_flight = 0
        self.admitted = asyncio.Event()  # set at each admission (gateway.jobs.interactive)

    def has_room(self, count: int = 1) -> bool:
        return self.in_flight + count <= self.limit

    @contextmanager
    def admit(self, count: int = 1) -> Iterator[None]:
        """Hold `count` slots (a batch's photos) for the duration of the block, or raise
        `Overloaded` when fewer are free."""
        if not self.has_room(count):
            metrics.ANALYSES_REJECTED.inc()
            raise Overloaded(
                f"The gateway is already running {self.limit} analyses, its limit "
                "(PICMETRIC_MAX_ANALYSES_IN_FLIGHT); retry in a few seconds."
            )
        self.in_flight += count
        self.admitted.set()
        metrics.ANALYSES_IN_FLIGHT.inc(count)
        try:
            yield
        finally:
            self.in_flight -= count
            metrics.ANALYSES_IN_FLIGHT.dec(count)


class FetchLimiter:
    """Counts the image fetches each owner (gateway.tenancy) runs in one process: at most
    `per_key` at once, the next refused at once."""

    def __init__(self, per_key: int) -> None:
        if per_key < 1:
            raise ValueError(f"The fetch limit per key must be at least 1, not {per_key}.")
        self.per_key = per_key
        self.in_flight: Counter[str] = Counter()

    def has_room(self, owner: str) -> bool:
        return self.in_flight[owner] < self.per_key

    @contextmanager
    def admit(self, owner: str) -> Iterator[None]:
        """Hold one of `owner`'s fetches for the block, or raise `TooManyFetches`."""
        if not self.has_room(owner):
            raise TooManyFetches(
                f"This API key already has {self.per_key} image fetches in flight, its limit "
                "(PICMETRIC_MAX_FETCHES_PER_KEY); wait for them to finish, or send the image "
                "as an upload."
            )
        self.in_flight[owner] += 1
        try:
            yield
        finally:
            self.in_flight[owner] -= 1
            if not self.in_flight[owner]:
                del self.in_flight[owner]


class MemoryBudget:
    """Bytes that the photos being decoded and analysed in one process may hold together. A photo
    waits up to `wait_s` for its share (photos ahead of it finish within seconds), then is refused
    with 503 overloaded; one larger than the whole budget is refused at once with 413."""

    def __init__(self, total: int, wait_s: float) -> None:
        if total < 1:
            raise ValueError(f"The decode memory budget must be at least 1 byte, not {total}.")
        self.total = total
        self.wait_s = wait_s
        self.reserved = 0
        metrics.DECODE_MEMORY_BUDGET.set(total)
        self._freed = asyncio.Condition()

    @asynccontextmanager
    async def reserve(self, nbytes: int, what: str) -> AsyncIterator[None]:
        """Hold `nbytes` of the budget for the block; `what` names the photo in a refusal."""
        if nbytes > self.total:
            raise ImageTooLarge(
                f"Analysing {what} takes about {nbytes // MB} MB, more than the "
                f"{self.total // MB} MB this gateway gives all photos being analysed together "
                "(PICMETRIC_DECODE_MEMORY_BYTES): send a smaller photo or 8-bit colour, or raise "
                "the setting."
            )
        deadline = time.monotonic() + self.wait_s
        async with self._freed:
            while self.reserved + nbytes > self.total:
                left = deadline - time.monotonic()
                try:
                    await asyncio.wait_for(self._freed.wait(), max(left, 0))
                except TimeoutError:
                    metrics.ANALYSES_REJECTED.inc()
                    raise Overloaded(
                        f"The photos being analysed already hold {self.reserved // MB} MB of the "
                        f"{self.total // MB} MB budget (PICMETRIC_DECODE_MEMORY_BYTES) and "
                        f"{what} needs {nbytes // MB} MB; retry in a few seconds."
                    ) from None
            self.reserved += nbytes
            metrics.DECODE_MEMORY.inc(nbytes)
        try:
            yield
        finally:
            async with self._freed:
                self.reserved -= nbytes
                metrics.DECODE_MEMORY.dec(nbytes)
                self._freed.notify_all()
