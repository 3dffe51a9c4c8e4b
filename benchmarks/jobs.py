"""Bulk jobs against the Triton plateau (issue 32): per photo size, a job of `--photos` real-size
photos (tests/utils/real_photos.py, as benchmarks.real_photos makes them; each photo's bytes
distinct, so none is answered from the results store) through the real path: the gateway under
uvicorn, Redis (Debian's redis-server), one `picmetric worker` and one local Triton, all three
models. The photos lie under an S3 prefix on moto's S3 server (`--source s3`, the default) or on
a local HTTP server, the job then a list of their URLs (`--source urls`).

Per size, in this order, on the same Triton:

1. `interactive, no job`: one photo at a time through `POST /v1/analyze` (upload), the next sent
   a second after the previous one was sent, or as soon as it was answered when it took longer
   (one person's photos, never more than one in flight): median and p90 latency;
2. `/v1/analyze x4`: `--plateau-photos` photos at concurrency 4 (a worker's default
   PICMETRIC_JOBS_WORKER_CONCURRENCY): the service's own plateau, photos/s;
3. perf_analyzer (when installed, see below): each client model alone at concurrency 4 with the
   tensors the gateway sends for this size, closed loop; its inferences/s, and the three
   models' combined plateau 1 / (1/r_resnet50 + 1/r_yolov3 + 1/r_mtcnn) (one photo needs one
   inference of each on the same cores; perf_analyzer drives one model per run, so it cannot
   drive the whole three-model analysis itself);
4. the job alone: submitted (`POST /v1/jobs`), polled until done; photos/s from the submit to
   the last answer (and the job's own `photos_per_second`);
5. a job of `--busy-photos` photos while the interactive photo of step 1 keeps being sent: its
   median and p90 latency during the job (the workers yield the cores to it:
   gateway/jobs/interactive.py), and that job's photos/s.

Prints a Markdown table for BENCHMARKS.md, then `lscpu`'s model name and flags (progress goes to
stderr). `job / x4` and `job / perf_analyzer` are the job's rate over each plateau (the goal:
within 10 %).

    python -m benchmarks.jobs [--photos 200] [--busy-photos 12] [--sizes 1,3,12]
                              [--source s3|urls] [--plateau-photos 24] [--interactive 10]
                              [--perf-analyzer PATH] [--repository PATH]

perf_analyzer is not a project dependency and this benchmark installs nothing: install it once
(DESIGN.md; benchmarks.autoscale_signal uses the same one):

    python3 -m venv ~/.cache/perf-analyzer/venv
    ~/.cache/perf-analyzer/venv/bin/pip install 'tritonclient[grpc]==2.39.0' \
        nvidia-cuda-runtime-cu12
    sudo apt-get install libb64-0d

Without it (no file at --perf-analyzer) the perf_analyzer columns read `not installed` and the
plateau is the `/v1/analyze x4` column alone.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np

from benchmarks._measure import log, table
from benchmarks._served import MODELS, TRITON_TIMEOUT_S, prepare_repository, wait_ready
from benchmarks.autoscale_signal import (
    CLIENT_MODELS,
    PERF_ANALYZER,
    closed_loop,
    perf_environment,
    write_inputs,
)
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.http_server import serve_directory
from tests.utils.ports import free_port
from tests.utils.real_photos import jpeg_bytes, real_photo
from tests.utils.redis import redis_server
from tests.utils.services import S3_CREDENTIALS, gateway_env, gateway_process, s3_server

BUCKET = "picmetric-benchmark"
KEY = "benchmark-jobs"  # the job's API key
PERSON = "benchmark-person"  # the interactive photos' key: another tenant
CONCURRENCY = 4  # the plateau's, and a worker's default PICMETRIC_JOBS_WORKER_CONCURRENCY
INTERACTIVE_EVERY_S = 1.0


class Photos:
    """Distinct JPEGs of one real-size photo: photo `i` has `i`'s bits written into its first
    row's first 32 pixels (invisible to the models, new bytes to the results store)."""

    def __init__(self, megapixels: float) -> None:
        self.base = real_photo(megapixels)
        self.shape = self.base.shape

    def jpeg(self, i: int) -> bytes:
        photo = self.base.copy()
        bits = [(i >> b) & 1 for b in range(32)]
        photo[0, :32] = np.array(bits, np.uint8)[:, None] * 255
        return jpeg_bytes(photo)


@dataclass
class Interactive:
    """One photo at a time through /v1/analyze on a thread, at most one a second, until stopped;
    the wall times in ms."""

    url: str
    photos: Photos
    first: int  # the first photo's number (the numbers after it are this thread's)
    limit: int | None = None  # stop by itself after this many
    latencies: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"X-API-Key": PERSON}, timeout=600) as http:
            i = self.first
            while not self._stop.is_set() and len(self.latencies) < (self.limit or sys.maxsize):
                sent = time.perf_counter()
                analyze(http, self.photos.jpeg(i))
                self.latencies.append((time.perf_counter() - sent) * 1000)
                i += 1
                self._stop.wait(max(0.0, sent + INTERACTIVE_EVERY_S - time.perf_counter()))

    @contextmanager
    def meanwhile(self) -> Iterator[Interactive]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


def analyze(http: httpx.Client, jpeg: bytes) -> None:
    answer = http.post(
        "/v1/analyze",
        files={"file": ("photo.jpg", jpeg, "image/jpeg")},
        data={"models": MODELS},
    )
    answer.raise_for_status()
    if answer.json()["cached"]:
        raise RuntimeError("The gateway answered a photo from its cache; the bytes must differ")


def analyze_plateau(url: str, photos: Photos, count: int, first: int) -> float:
    """Photos/s of `count` photos at concurrency CONCURRENCY through /v1/analyze."""
    jpegs = [photos.jpeg(first + i) for i in range(count)]
    with httpx.Client(base_url=url, headers={"X-API-Key": PERSON}, timeout=600) as http:
        started = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(lambda jpeg: analyze(http, jpeg), jpegs))
        return count / (time.perf_counter() - started)


def perf_plateaus(
    binary: Path, server: TritonServer, photo: np.ndarray, folder: Path, requests: int
) -> dict[str, float]:
    """Each client model's inferences/s under perf_analyzer at concurrency CONCURRENCY."""
    rates = {}
    for model in CLIENT_MODELS:
        inputs = write_inputs(model, photo, folder / model)
        csv_file = folder / f"{model}.csv"
        command = [
            str(binary), "-m", model, "-u", server.grpc_url, "-i", "grpc",
            *closed_loop(CONCURRENCY),
            "--measurement-mode", "count_windows", "--measurement-request-count", str(requests),
            "--max-trials", "3", "--stability-percentage", "1000",
            "--input-data", str(folder / model), *inputs, "-f", str(csv_file),
        ]  # fmt: skip
        log(f"  perf_analyzer: {model} at concurrency {CONCURRENCY}")
        done = subprocess.run(command, env=perf_environment(binary), capture_output=True, text=True)
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-3000:]
            raise RuntimeError(f"perf_analyzer failed on {model}:\n{output}")
        with csv_file.open() as file:
            (row,) = list(csv.DictReader(file))
        rates[model] = float(row["Inferences/Second"])
    return rates


@dataclass(frozen=True)
class Places:
    """Where a job's photos lie: under an S3 prefix, or on the loopback HTTP server."""

    kind: str  # s3 or urls
    s3: Any
    served: Path  # the HTTP server's folder
    http_root: str

    def put(self, name: str, photos: Photos, first: int, count: int) -> dict[str, Any]:
        """`count` photos, numbered from `first`, as a job's source."""
        urls = []
        for i in range(count):
            jpeg = photos.jpeg(first + i)
            if self.kind == "s3":
                self.s3.put_object(Bucket=BUCKET, Key=f"jobs/{name}/{i:05d}.jpg", Body=jpeg)
            else:
                (self.served / f"{name}-{i:05d}.jpg").write_bytes(jpeg)
                urls.append(f"{self.http_root}/{name}-{i:05d}.jpg")
        return {"s3_prefix": f"s3://{BUCKET}/jobs/{name}/"} if self.kind == "s3" else {"urls": urls}


def run_job(url: str, source: dict[str, Any], photos: int) -> tuple[float, float]:
    """The job's photos/s from submit to done, and its own photos_per_second."""
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=60) as http:
        started = time.perf_counter()
        submitted = http.post("/v1/jobs", json={"source": source, "models": MODELS.split(",")})
        if submitted.status_code != 202:
            raise RuntimeError(f"The job was refused: {submitted.status_code} {submitted.text}")
        job_id = submitted.json()["id"]
        while True:
            job = http.get(f"/v1/jobs/{job_id}").raise_for_status().json()
            if job["state"] != "queued" and job["state"] != "running":
                break
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
    counts = job["counts"]
    if job["state"] != "done" or counts["done"] != photos:
        raise RuntimeError(f"The job ended {job['state']} with {counts}, not every photo done")
    return photos / elapsed, float(job["photos_per_second"])


@contextmanager
def worker(env: dict[str, str], log_file: Path) -> Iterator[None]:
    """`picmetric worker` with the gateway's settings, until its log says it is ready."""
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "picmetric", "worker"],
            env={**os.environ, **S3_CREDENTIALS, **env, "PICMETRIC_OPS_PORT": str(free_port())},
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 120
        while "Job worker ready" not in log_file.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"The worker did not start:\n{log_file.read_text()[-3000:]}")
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        process.wait(120)


def percentile(values: list[float], q: int) -> str:
    return f"{np.percentile(values, q):.0f}" if values else "—"


def lscpu() -> str:
    """lscpu's model name and flags."""
    fields = dict(
        line.split(":", 1) for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}
        ).stdout.splitlines() if ":" in line
    )  # fmt: skip
    name = fields.get("Model name", "unknown").strip()
    return f"lscpu model name: {name}\nlscpu flags: {fields.get('Flags', 'unknown').strip()}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=200, help="photos of the job alone")
    parser.add_argument(
        "--busy-photos", type=int, default=12, help="photos of the job beside interactive ones"
    )
    parser.add_argument("--sizes", default="1,3,12", help="megapixels, comma-separated")
    parser.add_argument("--source", choices=("s3", "urls"), default="s3")
    parser.add_argument("--plateau-photos", type=int, default=24, help="/v1/analyze x4 photos")
    parser.add_argument("--interactive", type=int, default=10, help="photos with no job")
    parser.add_argument("--perf-requests", type=int, default=12, help="answers per window")
    parser.add_argument("--perf-analyzer", type=Path, default=PERF_ANALYZER)
    parser.add_argument("--repository", type=Path)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's S3 server: a line per request
    sizes = [float(s) for s in args.sizes.split(",")]
    perf = args.perf_analyzer if args.perf_analyzer.is_file() else None
    if perf is None:
        log(f"No perf_analyzer at {args.perf_analyzer} (see --help): the plateau is /v1/analyze x4")
    started = dt.datetime.now(dt.UTC)
    rows: list[list[object]] = []
    with ExitStack() as stack:
        repository = prepare_repository(args.repository, stack)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        log("Starting Triton, Redis, the S3 server, the gateway and a worker")
        ports = TritonPorts(free_port(), free_port(), free_port())
        server = stack.enter_context(TritonServer(repository, ports, log_file=folder / "t.log"))
        redis_url = stack.enter_context(redis_server())
        s3_url = stack.enter_context(s3_server())
        s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", **{
            "aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        })  # fmt: skip
        s3.create_bucket(Bucket=BUCKET)
        served = folder / "served"
        served.mkdir()
        http_root = stack.enter_context(serve_directory(served))[0]
        env = gateway_env(
            server,
            repository,
            f"sqlite:///{folder}/benchmark.db",
            api_keys=f"{KEY},{PERSON}",
            redis_url=redis_url,
            rate_limit="1000000/minute",
            s3_bucket=BUCKET,
            s3_endpoint_url=s3_url,
            s3_read_from=f"{BUCKET}/jobs/",
            allow_private_urls="true",  # the URLs' server is on loopback
            jobs_max_photos=str(max(args.photos, args.busy_photos, 1)),
            triton_timeout_s=str(TRITON_TIMEOUT_S),
        )
        url = stack.enter_context(gateway_process(env, folder / "gateway.log"))
        wait_ready(url)
        stack.enter_context(worker(env, folder / "worker.log"))
        numbers = iter(range(1 << 31))  # every photo of the run gets a number of its own
        for megapixels in sizes:
            size = f"{megapixels:g}mp"
            log(f"{size}: making the photos")
            photos = Photos(megapixels)
            with httpx.Client(base_url=url, headers={"X-API-Key": PERSON}, timeout=600) as http:
                analyze(http, photos.jpeg(next(numbers)))  # warm-up: the first of this size
            log(f"{size}: interactive, no job ({args.interactive} photos)")
            idle = Interactive(url, photos, next(numbers) << 16, limit=args.interactive)
            idle.run()
            log(f"{size}: /v1/analyze x{CONCURRENCY} ({args.plateau_photos} photos)")
            first = next(numbers) << 16
            x4 = analyze_plateau(url, photos, args.plateau_photos, first)
            rates: dict[str, float] = {}
            if perf is not None:
                rates = perf_plateaus(perf, server, photos.base, folder / size, args.perf_requests)
            combined = 1 / sum(1 / r for r in rates.values()) if rates else None
            places = Places(args.source, s3, served, http_root)
            log(f"{size}: putting {args.photos} photos in place ({args.source})")
            source = places.put(f"{size}-alone", photos, next(numbers) << 16, args.photos)
            log(f"{size}: the job alone")
            job_rate, reported = run_job(url, source, args.photos)
            log(f"{size}: putting {args.busy_photos} photos in place ({args.source})")
            source = places.put(f"{size}-busy", photos, next(numbers) << 16, args.busy_photos)
            log(f"{size}: a job with the interactive photo meanwhile")
            busy = Interactive(url, photos, next(numbers) << 16)
            with busy.meanwhile():
                busy_rate, _ = run_job(url, source, args.busy_photos)
            for path in served.iterdir():
                path.unlink()
            rows.append([
                size, f"{photos.shape[1]}x{photos.shape[0]}", args.photos,
                f"{job_rate:.3f}", f"{reported:.3f}", f"{x4:.3f}", f"{job_rate / x4:.2f}",
                " / ".join(f"{rates[m]:.2f}" for m in CLIENT_MODELS) if rates else "not installed",
                f"{combined:.3f}" if combined else "—",
                f"{job_rate / combined:.2f}" if combined else "—",
                percentile(idle.latencies, 50), percentile(idle.latencies, 90),
                percentile(busy.latencies, 50), percentile(busy.latencies, 90),
                len(busy.latencies), f"{busy_rate:.3f}",
            ])  # fmt: skip
    headers = [
        "size", "pixels", "photos", "job photos/s", "job's own photos/s",
        f"/v1/analyze x{CONCURRENCY} photos/s", "job / x4",
        "perf_analyzer inferences/s (resnet50 / yolov3 / mtcnn)", "perf_analyzer plateau photos/s",
        "job / perf_analyzer", "interactive median ms, no job", "p90", "during the job, median ms",
        "p90", "interactive photos during the job", "that job's photos/s",
    ]  # fmt: skip
    print(f"\n`python -m benchmarks.jobs {' '.join(sys.argv[1:])}`".rstrip())
    print(f"{started:%Y-%m-%d %H:%M} UTC; nproc {len(os.sched_getaffinity(0))}; "
          f"source {args.source}; all three models\n")  # fmt: skip
    print(table(headers, rows))
    print()
    print(lscpu())


if __name__ == "__main__":
    main()
