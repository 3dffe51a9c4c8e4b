"""Storage faults heal by themselves, against the real gateway (uvicorn), the session's Triton, a
PostgreSQL cluster of its own and moto's S3 server, all on loopback.

PostgreSQL is stopped (fast shutdown) for DOWN_S seconds under a steady load of uncached uploads
and started again: the gateway answers only 200 or 503 `storage_unavailable` with Retry-After,
every request within the client's timeout, 200s again within RECOVERY_LIMIT_S of the restart and
without a gateway restart, and the table holds exactly the analyses answered 200, each complete.
S3 is stopped under `/v1/images`: 503 `storage_unavailable`, nothing stored; back, it works.
With no database at all, `picmetric gateway` does not start: one error line, exit status 1.
Each test prints what it measured (time to recover, requests failed meanwhile); `pytest -s`."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from gateway.store.storage import AnalysisRow
from picmetric.triton_server import TritonServer
from tests.utils.analyses import count_analyses
from tests.utils.ports import free_port
from tests.utils.postgres import postgres_cluster
from tests.utils.real_photos import jpeg_bytes
from tests.utils.services import S3_CREDENTIALS, gateway_process, restartable_s3_server

pytestmark = pytest.mark.integration

CLIENTS = 3
WARM_S = 5  # steady load before PostgreSQL stops
DOWN_S = 10
RECOVERY_LIMIT_S = 30
AFTER_S = 3  # load kept after the first success once it is back
# Far above one small ResNet50 analysis here, and above the store's bounded waits
# (gateway.store.storage.DATABASE_TIMEOUT_S): a request still unanswered then has hung.
CLIENT_TIMEOUT_S = 20
BUCKET = "picmetric-fault-uploads"
COLUMNS = tuple(column.name for column in AnalysisRow.__table__.columns)


@dataclass(frozen=True)
class Answer:
    threshold: float
    started: float
    finished: float
    status: int | None  # None: no answer within CLIENT_TIMEOUT_S, or the connection failed
    body: dict[str, Any]
    retry_after: str | None
    failure: str | None = None


def _small_jpeg(photo: np.ndarray, side: int = 160) -> bytes:
    return jpeg_bytes(cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA))


def _post(client: httpx.Client, path: str, jpeg: bytes, threshold: float, started: float) -> Answer:
    """One upload, analysed by ResNet50 alone; each threshold differs, so none is a cache hit."""
    try:
        response = client.post(
            path,
            files={"file": ("photo.jpg", jpeg, "image/jpeg")},
            data={"models": "resnet50", "threshold": f"{threshold:.5f}"},
        )
    except httpx.HTTPError as exc:
        return Answer(threshold, started, time.monotonic(), None, {}, None, repr(exc))
    return Answer(
        threshold,
        started,
        time.monotonic(),
        response.status_code,
        response.json(),
        response.headers.get("retry-after"),
    )


class Load:
    """CLIENTS threads, each posting the photo to /v1/analyze, one request after the other,
    until stopped; every answer is kept."""

    def __init__(self, url: str, jpeg: bytes) -> None:
        self.url, self.jpeg = url, jpeg
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thresholds = itertools.count()

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT_S) as client:
            while not self._stop.is_set():
                threshold = round(0.3 + next(self._thresholds) * 1e-5, 5)
                answer = _post(client, "/v1/analyze", self.jpeg, threshold, time.monotonic())
                with self._lock:
                    self.answers.append(answer)
                if answer.status != 200:
                    time.sleep(0.1)  # a 503 is answered at once: no need to spin on it

    @contextmanager
    def running(self) -> Iterator[Load]:
        threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(CLIENT_TIMEOUT_S + 5)

    def first_success(self, since: float, limit_s: float) -> float:
        """When the first 200 to a request sent after `since` arrived; fails after `limit_s`."""
        deadline = since + limit_s
        while time.monotonic() < deadline:
            with self._lock:
                done = [a.finished for a in self.answers if a.started >= since and a.status == 200]
            if done:
                return min(done)
            time.sleep(0.1)
        pytest.fail(f"No 200 answer in the {limit_s} s after {since:.1f}: {self.answers[-3:]}")


def _gateway_env(triton: TritonServer, model_repository: Path, database_url: str) -> dict[str, str]:
    return {
        "PICMETRIC_TRITON_GRPC_URL": triton.grpc_url,
        "PICMETRIC_MODEL_REPOSITORY": str(model_repository),
        "PICMETRIC_DATABASE_URL": database_url,
        "PICMETRIC_MAX_ANALYSES_IN_FLIGHT": str(CLIENTS * 4),  # admission never refuses here
    }


def _stored_rows(database_url: str) -> dict[str, dict[str, Any]]:
    """Every row, as PostgreSQL returns it, the JSON columns as text."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            query = text(
                "SELECT id, created_at, source_kind, source, image_sha256, cache_key, width, "
                "height, models::text AS models, result::text AS result, "
                "timings::text AS timings, owner FROM analyses"
            )
            return {row.id: dict(row._mapping) for row in connection.execute(query)}
    finally:
        engine.dispose()


def _check_complete(row: dict[str, Any], answer: Answer) -> None:
    missing = [column for column in COLUMNS if row[column] is None]
    assert not missing, f"row {row['id']} has no {missing}"
    result = json.loads(row["result"])
    assert result["options"]["threshold"] == pytest.approx(answer.threshold)
    assert "resnet50" in json.loads(row["models"]) and json.loads(row["timings"])
    assert result["results"]["resnet50"] == answer.body["results"]["resnet50"]


def test_gateway_answers_503_while_postgres_is_down_and_heals_by_itself(
    triton: TritonServer,
    model_repository: Path,
    photos: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    with postgres_cluster() as cluster:
        env = _gateway_env(triton, model_repository, cluster.url)
        with gateway_process(env, tmp_path / "gateway.log") as url:
            load = Load(url, _small_jpeg(photos["astronaut"]))
            with load.running():
                load.first_success(time.monotonic(), limit_s=60)  # models warm, store works
                time.sleep(WARM_S)
                stopped = time.monotonic()
                cluster.stop("fast")
                time.sleep(DOWN_S)
                cluster.start()
                back = time.monotonic()
                recovered = load.first_success(back, RECOVERY_LIMIT_S)
                time.sleep(AFTER_S)
            answers = list(load.answers)
            readable = {
                a.body["id"]: httpx.get(f"{url}/v1/analyses/{a.body['id']}", timeout=10)
                for a in answers
                if a.status == 200
            }
        rows = _stored_rows(cluster.url)

    unanswered = [a for a in answers if a.status is None]
    assert not unanswered, f"requests with no answer (hung or dropped): {unanswered[:3]}"
    assert {a.status for a in answers} <= {200, 503}, [a for a in answers if a.status != 200][:3]
    failed = [a for a in answers if a.status == 503]
    for answer in failed:
        assert answer.body["errortype"] == "storage_unavailable", answer.body
        assert answer.retry_after is not None and int(answer.retry_after) > 0
    during = [a for a in failed if stopped <= a.finished]
    assert during, "no request failed while PostgreSQL was down: the fault did not bite"
    after = [a for a in answers if a.started >= recovered]
    assert after and all(a.status == 200 for a in after), "failures after the first success"

    ok = {a.body["id"]: a for a in answers if a.status == 200}
    assert not any(a.body["cached"] for a in ok.values()), "a cache hit: thresholds must differ"
    assert all(r.status_code == 200 for r in readable.values()), "a 200's id is not readable"
    for analysis_id, answer in ok.items():
        assert analysis_id in rows, f"200 answered {analysis_id}, but no row has it"
        _check_complete(rows[analysis_id], answer)
    # A row no 200 answered: only possible when PostgreSQL stopped during that request's COMMIT,
    # which then succeeded without the gateway hearing it
    # (gateway.store.storage.AnalysisStore.save). Such a row is complete and belongs to a request
    # that failed during the outage.
    failed_thresholds = {round(a.threshold, 5) for a in during}
    orphans = [rows[i] for i in rows.keys() - ok.keys()]
    for row in orphans:
        threshold = json.loads(row["result"])["options"]["threshold"]
        assert round(threshold, 5) in failed_thresholds, f"row {row['id']} answered by no 200"
        assert all(row[column] is not None for column in COLUMNS)
    assert len(orphans) <= CLIENTS, f"{len(orphans)} rows answered by no 200"

    slowest_503 = max(a.finished - a.started for a in failed)
    print(
        f"\nPostgreSQL down {back - stopped:.1f} s: {len(answers)} requests, {len(ok)} answered "
        f"200, {len(failed)} answered 503 storage_unavailable (slowest {slowest_503:.2f} s), "
        f"{len(orphans)} rows without a 200; first 200 {recovered - back:.2f} s after the "
        f"restart, {len(after)} requests after it all 200; rows {len(rows)} = 200s {len(ok)}"
    )


def test_upload_answers_503_while_s3_is_down_and_heals_by_itself(
    triton: TritonServer,
    model_repository: Path,
    photos: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'analyses.db'}"
    with restartable_s3_server() as s3:
        credentials = {
            "aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "region_name": S3_CREDENTIALS["AWS_DEFAULT_REGION"],
        }
        boto3.client("s3", endpoint_url=s3.url, **credentials).create_bucket(Bucket=BUCKET)
        env = {
            **_gateway_env(triton, model_repository, database_url),
            "PICMETRIC_S3_BUCKET": BUCKET,
            "PICMETRIC_S3_ENDPOINT_URL": s3.url,
            "PICMETRIC_ALLOW_PRIVATE_URLS": "true",
        }
        jpeg = _small_jpeg(photos["chelsea"])
        with (
            gateway_process(env, tmp_path / "gateway.log") as url,
            httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT_S) as client,
        ):
            kept = _post(client, "/v1/images", jpeg, 0.3, time.monotonic())
            assert kept.status == 201, kept.body

            s3.stop()
            stopped = time.monotonic()
            refused = _post(client, "/v1/images", jpeg, 0.31, stopped)
            assert refused.status == 503, refused.body
            assert refused.body["errortype"] == "storage_unavailable"
            assert "S3 is unreachable" in refused.body["message"]
            assert refused.retry_after is not None and int(refused.retry_after) > 0
            # Reading an image by its s3:// key is a fetch of the client's source
            # (gateway.intake.s3.read)
            by_key = client.post(
                "/v1/analyze", json={"url": kept.body["source"]["url"], "models": ["resnet50"]}
            )
            assert by_key.status_code == 400, by_key.text
            assert by_key.json()["errortype"] == "url_unreachable"
            assert count_analyses(database_url) == 1, "an upload that was not kept was stored"

            s3.start()
            back = time.monotonic()
            failed_meanwhile = 1
            while True:
                again = _post(client, "/v1/images", jpeg, 0.32 + failed_meanwhile * 1e-4, back)
                if again.status == 201 or time.monotonic() - back > RECOVERY_LIMIT_S:
                    break
                assert again.status == 503, again.body
                failed_meanwhile += 1
                time.sleep(0.2)
            assert again.status == 201, again.body
            assert count_analyses(database_url) == 2

    print(
        f"\nS3 down: the upload answered 503 in {refused.finished - refused.started:.2f} s; "
        f"after S3 was back the first upload was kept {again.finished - back:.2f} s later, "
        f"{failed_meanwhile - 1} failed in between"
    )


def test_gateway_start_fails_in_one_line_when_postgres_is_down(tmp_path: Path) -> None:
    """The schema is prepared before anything else starts (gateway.store.migrate), so a database
    that is not there is one plain ERROR line and exit status 1, not a traceback or a hang;
    compose's restart policy then starts the gateway again until the database is back (README)."""
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    env = {**os.environ, "PICMETRIC_DATABASE_URL": url, "PICMETRIC_MIGRATE_ON_START": "false"}
    command = [sys.executable, "-m", "picmetric", "gateway", "--port", str(free_port())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, done.stderr
    assert f"Could not reach or migrate the database at {url}" in errors[0]
    assert "Connection refused" in errors[0]
