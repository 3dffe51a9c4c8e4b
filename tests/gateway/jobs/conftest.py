"""Jobs on the real parts: Redis (with its append-only file, restartable), moto's S3 server,
PostgreSQL, the tests' Triton, the gateway under uvicorn, and `picmetric worker` processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from picmetric.triton_server import TritonServer
from tests.gateway.conftest import BUCKET, s3_client
from tests.utils.ports import free_port
from tests.utils.postgres import fresh_database
from tests.utils.redis import RedisServer, redis_servers
from tests.utils.services import S3_CREDENTIALS, gateway_env, gateway_process, wait_until

# Two models keep the photos' inference short on two busy cores; the job and /v1/analyze are
# asked the same.
MODELS = ["resnet50", "mtcnn"]
MAX_PHOTOS = 60  # PICMETRIC_JOBS_MAX_PHOTOS: the big job is exactly at it
MAX_PIXELS = 1_000_000  # PICMETRIC_MAX_IMAGE_PIXELS: one photo of the big job is over it
MANIFEST_BYTES = 4096
EXPORT_SHARD = 2  # PICMETRIC_JOBS_EXPORT_SHARD_RESULTS: a 5-photo job's export is 3 shards
HEARTBEAT_S = 8  # PICMETRIC_JOBS_HEARTBEAT_TIMEOUT_S: a photo of a dead worker's is sent again


@dataclass(frozen=True)
class JobsEnv:
    url: str  # the gateway
    env: dict[str, str]  # the PICMETRIC_* settings of the gateway, and of its workers
    redis: RedisServer
    s3_url: str
    folder: Path
    keys: dict[str, str]  # API keys by name, each a new owner in the session's PostgreSQL


@pytest.fixture(scope="module")
def jobs_env(
    triton: TritonServer,
    model_repository: Path,
    s3_url: str,
    postgres_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[JobsEnv]:
    folder = tmp_path_factory.mktemp("jobs")
    keys = {name: f"{name}-{uuid.uuid4().hex}" for name in ("alice", "bob", "carol")}
    # A database of its own: the workers sweep every open job in theirs.
    with redis_servers(appendonly=True) as redis, fresh_database(postgres_url) as database_url:
        env = gateway_env(
            triton,
            model_repository,
            database_url,
            api_keys=",".join(keys.values()),
            redis_url=redis.url,
            rate_limit="100000/minute",
            s3_bucket=BUCKET,
            s3_endpoint_url=s3_url,
            # the jobs' photos, and the uploads a key kept (picmetric jobs submit FOLDER)
            s3_read_from=f"{BUCKET}/jobs/,{BUCKET}/uploads/",
            max_image_pixels=str(MAX_PIXELS),
            jobs_max_photos=str(MAX_PHOTOS),
            jobs_manifest_max_bytes=str(MANIFEST_BYTES),
            jobs_heartbeat_timeout_s=str(HEARTBEAT_S),
            allow_private_urls="true",  # the webhooks' receiver, on loopback
            jobs_export_to=f"{BUCKET}/exports/",
            jobs_export_shard_results=str(EXPORT_SHARD),
        )
        with gateway_process(env, folder / "gateway.log") as url:
            yield JobsEnv(url, env, redis, s3_url, folder, keys)


@dataclass(frozen=True)
class Worker:
    process: subprocess.Popen[bytes]
    metrics_url: str


@contextmanager
def worker_process(jobs: JobsEnv, name: str) -> Iterator[Worker]:
    """`picmetric worker` with the gateway's settings, its metrics on a port of its own; stopped
    (SIGTERM) afterwards unless the test killed it."""
    log = jobs.folder / f"worker-{name}.log"
    metrics_port = str(free_port())
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "picmetric", "worker"],
            env={**os.environ, **S3_CREDENTIALS, **jobs.env, "PICMETRIC_OPS_PORT": metrics_port},
            stdout=out,
            stderr=out,
        )
    try:
        wait_until(
            lambda: "Job worker ready" in log.read_text() or process.poll() is not None,
            60,
            "the worker starting",
            log,
        )
        assert process.poll() is None, log.read_text()[-3000:]
        yield Worker(process, f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(60)
            assert "Task was destroyed" not in log.read_text()  # the worker closed its services


def api(jobs: JobsEnv, key: str) -> httpx.Client:
    return httpx.Client(base_url=jobs.url, headers={"X-API-Key": jobs.keys[key]}, timeout=60)


def wait_for_job(client: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    """The job once it is done, failed or cancelled; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if job["state"] in ("done", "failed", "cancelled"):
            return dict(job)
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} not finished within {timeout} s: {job}")
        time.sleep(0.5)


def all_results(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """Every page of the job's results, in order."""
    results: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "25", **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/jobs/{job_id}/results", params=params).raise_for_status().json()
        results += page["results"]
        cursor = page["next_cursor"]
        if cursor is None:
            return results


def small_photos(photos: dict[str, np.ndarray], count: int, seed: int) -> list[bytes]:
    """`count` distinct small JPEGs: crops of the real photos at 96-200 px, some mirrored."""
    rng = np.random.default_rng(seed)
    names = sorted(photos)
    out = []
    for i in range(count):
        rgb = photos[names[i % len(names)]]
        height, width = rgb.shape[:2]
        side = int(rng.integers(min(height, width) // 2, min(height, width)))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        crop = rgb[top : top + side, left : left + side]
        if i % 3 == 1:
            crop = crop[:, ::-1]
        size = int(rng.integers(96, 200))
        small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        assert ok
        out.append(jpeg.tobytes())
    assert len(set(out)) == count
    return out


def put_photos(jobs: JobsEnv, prefix: str, photos: dict[str, bytes]) -> str:
    """The photos under s3://BUCKET/jobs/<prefix>/<name>; the prefix's URL."""
    s3 = s3_client(jobs.s3_url)
    for name, data in photos.items():
        s3.put_object(Bucket=BUCKET, Key=f"jobs/{prefix}/{name}", Body=data)
    return f"s3://{BUCKET}/jobs/{prefix}/"
