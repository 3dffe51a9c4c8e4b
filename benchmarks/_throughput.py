"""Shared by the throughput benchmarks: items per second at a given concurrency."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")


def items_per_second(infer: Callable[[Item], object], items: Sequence[Item], workers: int) -> float:
    """Run `infer` over `items` with `workers` threads after one warm-up call."""
    infer(items[0])
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(infer, items))
    return len(items) / (time.perf_counter() - started)
