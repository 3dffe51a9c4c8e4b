"""Latency under load with and without the admission bound (PICMETRIC_MAX_ANALYSES_IN_FLIGHT).

`python -m benchmarks.admission` (defaults: `--clients 8 --seconds 20 --bounds 2,4,1024
--size 1mp`): one Triton, then one gateway per bound (1024 stands for "no bound": more than
the clients), each loaded by `--clients` threads that upload the photo (all three models, a
new threshold each time so nothing is answered from the cache) one after another for
`--seconds`; a 503 `overloaded` is retried after its Retry-After, as a client should. Prints,
per bound, the 200s (count, photos/s from the first request to the last answer, p50 and p99 of
their latency), the 503s (count, p99) and the errortypes of every answer that was not 200."""

from __future__ import annotations

import argparse
import itertools
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from benchmarks._measure import log, machine, table
from benchmarks._served import MODELS, TRITON_TIMEOUT_S, prepare_repository, wait_ready
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.ports import free_port
from tests.utils.real_photos import SIZES, jpeg_bytes, real_photo
from tests.utils.services import gateway_env, gateway_process


@dataclass
class Load:
    """Seconds per answer by status, the errortypes of the 503s, and the seconds from the
    first request until the last answer (requests sent in the window finish after it)."""

    answers: dict[int, list[float]] = field(default_factory=dict)
    errortypes: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0


def load(url: str, jpeg: bytes, clients: int, seconds: float) -> Load:
    """`clients` closed-loop clients sending for `seconds`."""
    thresholds = itertools.count()
    lock = threading.Lock()
    result = Load()
    started = time.monotonic()
    stop = started + seconds

    def client() -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            while time.monotonic() < stop:
                with lock:
                    threshold = 0.2 + next(thresholds) / 1e5
                started = time.perf_counter()
                answer = http.post(
                    "/v1/analyze",
                    files={"file": ("photo.jpg", jpeg, "image/jpeg")},
                    data={"models": MODELS, "threshold": f"{threshold:.5f}"},
                )
                took = time.perf_counter() - started
                with lock:
                    result.answers.setdefault(answer.status_code, []).append(took)
                    if answer.status_code != 200:
                        result.errortypes[answer.json().get("errortype", "?")] += 1
                if answer.status_code == 503:
                    time.sleep(float(answer.headers.get("Retry-After", "1")))

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    result.elapsed = time.monotonic() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--bounds", default="2,4,1024")
    parser.add_argument("--size", default="1mp", choices=sorted(SIZES))
    parser.add_argument("--repository", type=Path)
    args = parser.parse_args()
    jpeg = jpeg_bytes(real_photo(float(args.size.removesuffix("mp"))))
    rows = []
    with ExitStack() as stack:
        repository = prepare_repository(args.repository, stack)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ports = TritonPorts(free_port(), free_port(), free_port())
        server = stack.enter_context(TritonServer(repository, ports))
        for bound in (int(b) for b in args.bounds.split(",")):
            env = gateway_env(
                server,
                repository,
                f"sqlite:///{tmp}/bound{bound}.db",
                triton_timeout_s=str(TRITON_TIMEOUT_S),
                max_analyses_in_flight=str(bound),
            )
            with gateway_process(env, tmp / f"gateway{bound}.log") as url:
                wait_ready(url)
                log(f"bound {bound}: {args.clients} clients for {args.seconds:.0f} s")
                measured = load(url, jpeg, args.clients, args.seconds)
            answers = measured.answers
            ok, refused = answers.pop(200, []), answers.pop(503, [])
            rows.append(
                [
                    bound,
                    len(ok),
                    f"{len(ok) / measured.elapsed:.2f}",
                    f"{np.percentile(ok, 50):.2f}" if ok else "-",
                    f"{np.percentile(ok, 99):.2f}" if ok else "-",
                    len(refused),
                    f"{np.percentile(refused, 99) * 1000:.0f}" if refused else "-",
                    sum(len(v) for v in answers.values()),
                    ", ".join(f"{k} {n}" for k, n in sorted(measured.errortypes.items())) or "-",
                ]
            )
    print(f"\n{machine()}; {args.size}, {args.clients} clients x {args.seconds:.0f} s\n")
    headers = [
        "bound",
        "200s",
        "photos/s",
        "p50 s",
        "p99 s",
        "503s",
        "503 p99 ms",
        "other",
        "errortypes",
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
