"""Which Triton metric tracks load: NVIDIA's perf_analyzer against the local Triton at rising
concurrency, one client-facing model at a time, with Triton's metrics endpoint read meanwhile.

`python -m benchmarks.autoscale_signal` (defaults: `--models resnet50,yolov3,mtcnn --concurrency
1,2,4,8 --rates 50,65,80 --requests 12 --size 1mp`): starts one local Triton (the models
converted as the tests convert them: random ResNet50/YOLOv3 weights, seed 0, cached), makes each
model's input from a real 1 MP photo the way the gateway does (ResNet50's 224 px resize,
YOLOv3's 416 px letterbox and the photo's shape, MTCNN's whole photo), then per model runs
perf_analyzer (gRPC, three windows of `--requests` answers per step) while a thread reads
Triton's metrics every `--every` seconds: first closed loop at each concurrency (`x4`: four
requests always in flight), which finds the model's plateau (the median rate of the upper half
of the concurrencies); then open loop, Poisson arrivals at each of `--rates` per cent of the
plateau (`65 % (3.10/s)`), as many independent clients load a replica: where the HPA's target
belongs. Per step it prints:

- the requests served per second (Triton's success counter) and their share of the plateau;
  perf_analyzer's p50 and p99 latency (`not kept`: perf_analyzer could not keep an open-loop
  rate, the model served less than was sent);
- the candidate autoscaling signals, from Triton's counters over the step (the first 2 s of load
  left out):
  - `all-model ratio`: queue time over compute time summed over every model, the chart's old
    signal (MTCNN's pyramid bands queueing behind each other count in it);
  - `client ratio`: the same over the models clients call only (resnet50, yolov3, mtcnn);
  - `waiting`: requests waiting in the client models' queues on average, sum of
    rate(nv_inference_queue_duration_us) / 1e6 (Little's law: time waited per second is the
    mean number waiting);
  - `pending`: nv_inference_pending_request_count of the client models, averaged over the reads
    (the same quantity as a gauge, sampled);
  - `in Triton`: client requests inside Triton on average (queued or running), sum of
    rate(nv_inference_request_duration_us) / 1e6;
  - `queue ms/req`: the client models' queue time per successful request.

perf_analyzer is not a project dependency: it comes from the `tritonclient==2.39.0` wheel (with
Debian's libb64-0d and libcudart from `nvidia-cuda-runtime-cu12`) in a venv of its own,
~/.cache/perf-analyzer/venv, which the benchmark makes on first use (`--perf-analyzer` names
another binary); libb64 it asks for (`sudo apt-get install libb64-0d`).

Progress goes to stderr; the Markdown table (for BENCHMARKS.md) to stdout.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import re
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from benchmarks._measure import log, machine, table
from benchmarks._served import prepare_repository
from core.preprocessing import letterbox, resize_for_resnet50
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.ports import free_port
from tests.utils.real_photos import SIZES, real_photo

CLIENT_MODELS = ("resnet50", "yolov3", "mtcnn")
PERF_ANALYZER = Path.home() / ".cache" / "perf-analyzer" / "venv" / "bin" / "perf_analyzer"
WARMUP_S = 2.0
_SAMPLE = re.compile(r"^(nv_inference_\w+)\{([^}]*)\}\s+(\S+)$")
_MODEL = re.compile(r'model="([^"]+)"')

# Triton metrics: name -> model -> value (the versions of a model added up).
Reading = dict[str, dict[str, float]]


def parse_metrics(text: str) -> Reading:
    """Triton's nv_inference_* samples by metric and model."""
    reading: Reading = defaultdict(lambda: defaultdict(float))
    for line in text.splitlines():
        if (sample := _SAMPLE.match(line)) and (model := _MODEL.search(sample[2])):
            reading[sample[1]][model[1]] += float(sample[3])
    return reading


class Sampler:
    """Reads the metrics endpoint every `every` seconds on a thread: (monotonic time, reading)."""

    def __init__(self, url: str, every: float) -> None:
        self.url, self.every = url, every
        self.readings: list[tuple[float, Reading]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                text = http.get(self.url).text
                self.readings.append((time.monotonic(), parse_metrics(text)))
                self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Signals:
    """The candidate signals over one step (class docstring of the module)."""

    rate: float
    all_ratio: float
    client_ratio: float
    waiting: float
    pending: float
    in_triton: float
    queue_ms: float


def signals(readings: list[tuple[float, Reading]]) -> Signals:
    """From the first and last reading (counters) and every reading (the pending gauge)."""
    (t0, first), (t1, last) = readings[0], readings[-1]

    def delta(metric: str, models: tuple[str, ...] | None = None) -> float:
        names = models if models is not None else tuple(last[metric])
        return sum(last[metric][m] - first[metric][m] for m in names)

    queue, compute = "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"
    seconds = t1 - t0
    pending = [
        sum(r["nv_inference_pending_request_count"][m] for m in CLIENT_MODELS) for _, r in readings
    ]
    successes = delta("nv_inference_request_success", CLIENT_MODELS)
    return Signals(
        rate=successes / seconds,
        all_ratio=delta(queue) / max(delta(compute), 1.0),
        client_ratio=delta(queue, CLIENT_MODELS) / max(delta(compute, CLIENT_MODELS), 1.0),
        waiting=delta(queue, CLIENT_MODELS) / 1e6 / seconds,
        pending=float(np.mean(pending)),
        in_triton=delta("nv_inference_request_duration_us", CLIENT_MODELS) / 1e6 / seconds,
        queue_ms=delta(queue, CLIENT_MODELS) / max(successes, 1.0) / 1000,
    )


def write_inputs(model: str, photo: np.ndarray, folder: Path) -> list[str]:
    """perf_analyzer's --input-data folder for `model` (one raw file per input, named after it)
    and the extra arguments it needs; the tensors the gateway would send for `photo`."""
    folder.mkdir(parents=True, exist_ok=True)
    height, width = photo.shape[:2]
    if model == "resnet50":
        (folder / "image").write_bytes(resize_for_resnet50(photo).tobytes())
        return []
    if model == "yolov3":
        canvas, _ = letterbox(photo)
        (folder / "image").write_bytes(canvas.tobytes())
        (folder / "image_shape").write_bytes(np.array([height, width], np.int32).tobytes())
        return []
    if model == "mtcnn":
        (folder / "image").write_bytes(np.ascontiguousarray(photo).tobytes())
        return ["--shape", f"image:{height},{width},3"]
    raise ValueError(f"No inputs known for {model}; choose among {', '.join(CLIENT_MODELS)}.")


def install_perf_analyzer() -> None:
    """perf_analyzer in its venv (PERF_ANALYZER), made on first use from PyPI; Debian's libb64
    it needs is named when missing (installing it needs root)."""
    if not PERF_ANALYZER.is_file():
        venv = PERF_ANALYZER.parent.parent
        log(f"Installing perf_analyzer into {venv} (tritonclient 2.39.0 and libcudart, ~1 min)")
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        packages = ["tritonclient[grpc]==2.39.0", "nvidia-cuda-runtime-cu12"]
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *packages], check=True)
    libraries = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    if "libb64.so.0d" not in libraries:
        raise SystemExit("perf_analyzer needs Debian's libb64: sudo apt-get install libb64-0d")


def perf_environment(binary: Path) -> dict[str, str]:
    """LD_LIBRARY_PATH with libcudart.so.12 from nvidia-cuda-runtime-cu12 in the binary's venv."""
    libs = sorted(binary.parent.parent.glob("lib/python*/site-packages/nvidia/cuda_runtime/lib"))
    if not libs:
        raise SystemExit(
            f"No nvidia/cuda_runtime/lib in {binary.parent.parent}: pip install "
            "nvidia-cuda-runtime-cu12 into perf_analyzer's venv (see --help)."
        )
    paths = [str(libs[0]), *filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(":"))]
    return os.environ | {"LD_LIBRARY_PATH": ":".join(paths)}


def closed_loop(concurrency: int) -> list[str]:
    """perf_analyzer's arguments for `concurrency` requests always in flight."""
    return ["--concurrency-range", f"{concurrency}:{concurrency}"]


def open_loop(rate: float) -> list[str]:
    """perf_analyzer's arguments for Poisson arrivals at `rate` requests/s, as independent
    clients send them (however many are in flight)."""
    return [
        "--request-rate-range", f"{rate:.3f}:{rate:.3f}",
        "--request-distribution", "poisson", "--max-threads", "32",
    ]  # fmt: skip


def run_step(
    binary: Path,
    server: TritonServer,
    model: str,
    load: list[str],
    inputs: list[str],
    requests: int,
    every: float,
    csv_file: Path,
) -> tuple[dict[str, str] | None, Signals]:
    """perf_analyzer at one load (closed_loop or open_loop), the metrics read meanwhile; no
    perf_analyzer row when it gave none (an open-loop rate more than the model serves)."""
    command = [
        str(binary), "-m", model, "-u", server.grpc_url, "-i", "grpc", *load,
        # A window ends after `requests` answers: as long as a slow model needs, no longer.
        "--measurement-mode", "count_windows", "--measurement-request-count", str(requests),
        # Three windows, whatever their spread: the machine is shared, a stability rule would
        # only make the step longer.
        "--max-trials", "3", "--stability-percentage", "1000",
        "-f", str(csv_file), *inputs,
    ]  # fmt: skip
    with Sampler(server.metrics_url, every) as sampler:
        started = time.monotonic()
        done = subprocess.run(command, env=perf_environment(binary), capture_output=True, text=True)
    readings = [(t, r) for t, r in sampler.readings if t >= started + WARMUP_S]
    if done.returncode != 0:
        log("  perf_analyzer: " + " ".join((done.stdout + done.stderr).split()[-12:]))
        return None, signals(readings)
    with csv_file.open() as file:
        (row,) = list(csv.DictReader(file))
    return row, signals(readings)


def row(
    model: str, load: str, plateau: float, perf: dict[str, str] | None, found: Signals
) -> list[object]:
    def ms(column: str) -> str:
        return f"{float(perf[column]) / 1000:.0f}" if perf else "not kept"

    return [
        model,
        load,
        f"{found.rate:.2f}",
        f"{found.rate / plateau:.0%}",
        ms("p50 latency"),
        ms("p99 latency"),
        f"{found.all_ratio:.2f}",
        f"{found.client_ratio:.2f}",
        f"{found.waiting:.2f}",
        f"{found.pending:.2f}",
        f"{found.in_triton:.2f}",
        f"{found.queue_ms:.0f}",
    ]


HEADERS = [
    "model",
    "load",
    "served/s",
    "of plateau",
    "p50 ms",
    "p99 ms",
    "all-model ratio",
    "client ratio",
    "waiting",
    "pending",
    "in Triton",
    "queue ms/req",
]


def plateau(rates: list[float]) -> float:
    """The throughput plateau: the median closed-loop rate of the upper half of the
    concurrencies (robust to one step that a neighbour's job slowed down or sped up)."""
    return float(np.median(rates[len(rates) // 2 :]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(CLIENT_MODELS))
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--rates", default="50,65,80", help="open-loop rates, in %% of the plateau")
    parser.add_argument("--requests", type=int, default=12, help="answers per window")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between metric reads")
    parser.add_argument("--size", default="1mp", choices=sorted(SIZES))
    parser.add_argument("--perf-analyzer", type=Path, default=PERF_ANALYZER)
    parser.add_argument("--repository", type=Path)
    args = parser.parse_args()
    if args.perf_analyzer == PERF_ANALYZER:
        install_perf_analyzer()
    elif not args.perf_analyzer.is_file():
        raise SystemExit(f"No perf_analyzer at {args.perf_analyzer}: see --help to install it.")
    models = args.models.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    shares = [int(r) for r in args.rates.split(",") if r]
    photo = real_photo(float(args.size.removesuffix("mp")))
    started = dt.datetime.now(dt.UTC)
    rows: list[list[object]] = []
    with ExitStack() as stack:
        repository = prepare_repository(args.repository, stack)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ports = TritonPorts(free_port(), free_port(), free_port())
        log("Starting Triton")
        server = stack.enter_context(TritonServer(repository, ports))

        def step(
            model: str, load: list[str], inputs: list[str]
        ) -> tuple[dict[str, str] | None, Signals]:
            csv_file = tmp / f"{model}-{len(list(tmp.glob('*.csv')))}.csv"
            perf, found = run_step(
                args.perf_analyzer, server, model, load, inputs, args.requests, args.every, csv_file
            )
            kept = "" if perf else " (perf_analyzer could not keep the rate)"
            log(f"  {found.rate:.2f}/s, in Triton {found.in_triton:.2f}{kept}")
            return perf, found

        for model in models:
            folder = tmp / model
            inputs = ["--input-data", str(folder), *write_inputs(model, photo, folder)]
            measured = []
            for concurrency in levels:
                log(f"{model} at concurrency {concurrency}: 3 windows of {args.requests} answers")
                measured.append((f"x{concurrency}", *step(model, closed_loop(concurrency), inputs)))
            top = plateau([found.rate for _, _, found in measured])
            for share in shares:
                rate = top * share / 100
                log(f"{model} at {share} % of its plateau {top:.2f}/s, Poisson arrivals")
                measured.append(
                    (f"{share} % ({rate:.2f}/s)", *step(model, open_loop(rate), inputs))
                )
            rows += [row(model, load, top, perf, found) for load, perf, found in measured]
            log(table(HEADERS, rows))
    print(f"\n{started:%Y-%m-%d %H:%M} UTC; {machine()}; {args.size} photo\n")
    print(table(HEADERS, rows))


if __name__ == "__main__":
    main()
