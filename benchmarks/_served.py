"""The served half of benchmarks.real_photos: Triton and the gateway started on free ports,
photos posted at each concurrency, and the memory of every process meanwhile."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks._measure import Memory, descendants, log, memory
from core.paths import MODEL_REPOSITORY
from picmetric.repository import copy_models
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.ports import free_port
from tests.utils.services import gateway_env, gateway_process

NETWORKS = (
    "mtcnn_pnet",
    "mtcnn_pyramid_pnet",
    "mtcnn_rnet",
    "mtcnn_onet",
    "resnet50",
    "yolov3_backbone",
)
MODELS = "resnet50,yolov3,mtcnn"
# 12 MP at concurrency 4 can outlast the gateway's default 30 s per Triton call on a small CPU;
# the benchmark waits, and the report says which rows would have timed out.
TRITON_TIMEOUT_S = 600


@dataclass(frozen=True)
class Served:
    """One size at one concurrency through the gateway: ms samples by column (`wall`, each
    stage, each model), photos per second, and the faces in the last answer."""

    samples: dict[str, list[float]]
    rate: float
    faces: int


def prepare_repository(requested: Path | None, stack: ExitStack) -> Path:
    """--repository, ./model_repository when converted, or a converted temporary copy."""
    if requested is not None:
        return requested
    if all((MODEL_REPOSITORY / n / "1" / "model.onnx").exists() for n in NETWORKS):
        return MODEL_REPOSITORY
    target = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "model_repository"
    models = [p.name for p in MODEL_REPOSITORY.iterdir() if (p / "config.pbtxt").exists()]
    copy_models(models, target)
    log(f"Converting the models into {target} (cached after the first time)")
    subprocess.run(
        [sys.executable, "-m", "picmetric", "convert", "all", "--weights", "random", "--seed", "0"]
        + ["--repository", str(target)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return target


def wait_ready(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz", timeout=30).is_success:
            return
        time.sleep(0.5)
    raise RuntimeError(f"The gateway at {url} was not ready after {timeout:.0f} s")


def analyze(url: str, name: str, jpeg: bytes, threshold: float) -> dict[str, Any]:
    """One uncached analysis with all three models; its wall time is added as `wall_ms`."""
    started = time.perf_counter()
    answer = httpx.post(
        f"{url}/v1/analyze",
        files={"file": (f"{name}.jpg", jpeg, "image/jpeg")},
        data={"models": MODELS, "threshold": f"{threshold:.5f}"},
        timeout=600,
    )
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    if body["cached"]:
        raise RuntimeError("The gateway answered from its cache; the thresholds must differ")
    body["wall_ms"] = (time.perf_counter() - started) * 1000
    return body


def at_concurrency(
    url: str, name: str, jpeg: bytes, requests: int, workers: int, first: int
) -> tuple[list[dict[str, Any]], float]:
    """`requests` analyses on `workers` threads, thresholds 0.2 + (first + i) / 1e5; the
    answers and the elapsed seconds."""
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        bodies = list(
            pool.map(lambda i: analyze(url, name, jpeg, 0.2 + (first + i) / 1e5), range(requests))
        )
    return bodies, time.perf_counter() - started


@contextmanager
def served(repository: Path) -> Iterator[tuple[TritonServer, str]]:
    """A local Triton on `repository` and a gateway (SQLite) in front of it, ready; its URL."""
    ports = TritonPorts(free_port(), free_port(), free_port())
    with tempfile.TemporaryDirectory() as tmp, TritonServer(repository, ports) as server:
        env = gateway_env(
            server,
            repository,
            f"sqlite:///{tmp}/benchmark.db",
            triton_timeout_s=str(TRITON_TIMEOUT_S),
        )
        with gateway_process(env, Path(tmp) / "gateway.log") as url:
            wait_ready(url)
            yield server, url


def through_gateway(
    jpegs: dict[str, bytes], repository: Path, repeats: int, concurrency: list[int]
) -> tuple[dict[tuple[str, int], Served], dict[str, Memory]]:
    """Per (size, concurrency): what the gateway did; per step ("1mp x4"): memory by process."""
    results: dict[tuple[str, int], Served] = {}
    memories: dict[str, Memory] = {}
    with served(repository) as (server, url):
        assert server.process is not None
        triton = server.process.pid
        below = {triton, *descendants(triton)}
        gateway = [p for p in descendants(os.getpid()) if p not in below]
        count = 0
        for size, jpeg in jpegs.items():
            log(f"gateway: {size}")
            analyze(url, size, jpeg, 0.1 + count / 1e5)  # warm-up: first of this size
            for workers in concurrency:
                requests = repeats * workers
                bodies, seconds = at_concurrency(url, size, jpeg, requests, workers, count)
                count += requests
                samples: dict[str, list[float]] = defaultdict(list)
                for body in bodies:
                    samples["wall"].append(body["wall_ms"])
                    for stage, ms in body["timings_ms"].items():
                        samples[stage].append(ms)
                    for model in body["models"]:
                        samples[model["name"]].append(model["latency_ms"])
                faces = len(bodies[-1]["results"]["mtcnn"] or [])
                results[size, workers] = Served(samples, requests / seconds, faces)
                step = f"{size} x{workers}"
                memories[step] = memory([triton, *descendants(triton), *gateway])
    return results, memories
