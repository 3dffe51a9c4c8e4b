"""Shared by the throughput benchmarks: items per second at a given concurrency, and their
command, a network served by Triton beside raw ONNX Runtime on the same model file."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from conversion.samples import sample_photos
from core.paths import MODEL_REPOSITORY
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.ports import free_port

Item = TypeVar("Item")

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def items_per_second(infer: Callable[[Item], object], items: Sequence[Item], workers: int) -> float:
    """Run `infer` over `items` with `workers` threads after one warm-up call."""
    infer(items[0])
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(infer, items))
    return len(items) / (time.perf_counter() - started)


def compare_with_onnxruntime(
    description: str,
    requests: int,
    concurrencies: Sequence[int],
    prepare: Callable[[np.ndarray], Item],
    raw: Callable[[Path], Callable[[Item], object]],
    served: Callable[[str, Sequence[Item], int], tuple[float, list[str]]],
    columns: Sequence[str],
) -> None:
    """A throughput benchmark's command (`--repository`, `--requests`, default `requests`): the
    PHOTOS, each through `prepare`, in turn until there are `requests` items; then, at each of
    the `concurrencies`, images/s of `raw(repository)` (ONNX Runtime on the repository's file) and
    of `served(grpc_url, items, workers)` through a Triton started on the repository, with their
    ratio. `columns` name the served rate, the ratio and any cells `served` adds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--requests", type=int, default=requests)
    args = parser.parse_args()
    photos = [prepare(p) for p in sample_photos(PHOTOS).values()]
    items = [photos[i % len(photos)] for i in range(args.requests)]
    direct_infer = raw(args.repository)
    header = ["concurrency", "onnxruntime img/s", *columns]
    ports = TritonPorts(free_port(), free_port(), free_port())
    started = time.perf_counter()
    with TritonServer(args.repository, ports) as server:
        print(f"Triton start-up: {time.perf_counter() - started:.1f} s")
        print("  ".join(header))
        for workers in concurrencies:
            direct = items_per_second(direct_infer, items, workers)
            rate, extra = served(server.grpc_url, items, workers)
            cells = [f"{workers}", f"{direct:.2f}", f"{rate:.2f}", f"{rate / direct:.2f}", *extra]
            print(
                "  ".join(cell.rjust(len(name)) for cell, name in zip(cells, header, strict=True))
            )
