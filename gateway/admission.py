"""Admission control: at most `limit` analyses in flight per gateway process; past it a request is
refused at once (503 `overloaded` + Retry-After) rather than queued."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from gateway import metrics
from gateway.errors import Overloaded


class AdmissionLimiter:
    """Counts the analyses running in one process (one event loop, so no lock is needed)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"The admission limit must be at least 1, not {limit}.")
        self.limit = limit
        self.in_flight = 0

    @contextmanager
    def admit(self, count: int = 1) -> Iterator[None]:
        """Hold `count` slots (a batch's photos) for the duration of the block, or raise
        `Overloaded` when fewer are free."""
        if self.in_flight + count > self.limit:
            metrics.ANALYSES_REJECTED.inc()
            raise Overloaded(
                f"The gateway is already running {self.limit} analyses, its limit "
                "(PICMETRIC_MAX_ANALYSES_IN_FLIGHT); retry in a few seconds."
            )
        self.in_flight += count
        metrics.ANALYSES_IN_FLIGHT.inc(count)
        try:
            yield
        finally:
            self.in_flight -= count
            metrics.ANALYSES_IN_FLIGHT.dec(count)
