"""The cost of tracing (issue 31): one photo size at one concurrency (12 MP at 4 by default)
through three gateways on one Triton, in the same run and interleaved round by round so that the
host's drift falls on all three alike: tracing off (no OTEL_* variable: the no-op tracer), and
sampling 0.1 and 1.0 (OTEL_TRACES_SAMPLER=traceidratio). The traced gateways and Triton export
OTLP/HTTP to a receiver in this process (tests/utils/otlp.py), which decodes what it gets, as a
collector would. Triton runs with the trace flags for all three (rate=0: it traces only the calls
that carry a context, so the untraced gateway's calls cost it no trace), as compose runs it.

Prints a Markdown table for BENCHMARKS.md: per mode, the analyses, their median and p99 wall
time and photos/s over the rounds; then the spans and traces received (progress to stderr).

    python -m benchmarks.tracing_cost [--size 12mp] [--concurrency 4] [--rounds 3]
                                      [--repeats 2] [--repository PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from benchmarks._measure import log, machine, table
from benchmarks._served import TRITON_TIMEOUT_S, at_concurrency, prepare_repository, wait_ready
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.otlp import otlp_receiver
from tests.utils.ports import free_port
from tests.utils.real_photos import SIZES, jpeg_bytes, real_photo
from tests.utils.services import gateway_env, gateway_process

MODES = {"off": None, "0.1": "0.1", "1.0": "1.0"}  # the sampling ratio; None: no OTEL_* at all


def _without_otel() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="12mp", choices=sorted(SIZES))
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="each mode once per round")
    parser.add_argument("--repeats", type=int, default=2, help="analyses per worker per round")
    parser.add_argument("--repository", type=Path)
    args = parser.parse_args()
    jpeg = jpeg_bytes(real_photo(float(args.size.removesuffix("mp"))))
    walls: dict[str, list[float]] = {mode: [] for mode in MODES}
    seconds = dict.fromkeys(MODES, 0.0)
    with ExitStack() as stack:
        repository = prepare_repository(args.repository, stack)
        receiver = stack.enter_context(otlp_receiver())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        os.environ.update(otel)  # Triton's flags come from the variables (core/triton_trace.py)
        ports = TritonPorts(free_port(), free_port(), free_port())
        server = stack.enter_context(TritonServer(repository, ports, log_file=folder / "t.log"))
        base = _without_otel()
        urls = {}
        for mode, ratio in MODES.items():
            env = gateway_env(
                server,
                repository,
                f"sqlite:///{folder}/{mode}.db",
                triton_timeout_s=str(TRITON_TIMEOUT_S),
            )
            if ratio is not None:
                env |= otel | {"OTEL_TRACES_SAMPLER": "traceidratio"}
                env["OTEL_TRACES_SAMPLER_ARG"] = ratio
            log_file = folder / f"gateway-{mode}.log"
            urls[mode] = stack.enter_context(gateway_process(env, log_file, base_env=base))
            wait_ready(urls[mode])
        count = 0
        for url in urls.values():  # warm-up: each gateway's first analysis of the size
            at_concurrency(url, args.size, jpeg, 1, 1, count)
            count += 1
        requests = args.repeats * args.concurrency
        for round_ in range(1, args.rounds + 1):
            for mode, url in urls.items():
                log(f"round {round_}: tracing {mode}")
                bodies, elapsed = at_concurrency(
                    url, args.size, jpeg, requests, args.concurrency, count
                )
                count += requests
                walls[mode] += [body["wall_ms"] for body in bodies]
                seconds[mode] += elapsed
        received = receiver.received()
    rows = [
        [
            mode,
            len(walls[mode]),
            statistics.median(walls[mode]),
            float(np.percentile(walls[mode], 99)),
            f"{len(walls[mode]) / seconds[mode]:.3f}",
        ]
        for mode in MODES
    ]
    print(f"{machine()}; {args.size} at concurrency {args.concurrency}, {args.rounds} rounds\n")
    print(table(["tracing", "analyses", "median ms", "p99 ms", "photos/s"], rows))
    traces = len({span.trace_id for span in received})
    print(f"\nReceived {len(received)} spans in {traces} traces (0.1 and 1.0 together).")


if __name__ == "__main__":
    main()
