"""Bulk jobs end to end (issue 32): a job over an S3 prefix answers each photo as /v1/analyze
does, a killed worker and a restarted Redis lose no photo and answer none twice, and the API's
edges: another key's job, idempotent submits, cancel, the limits."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import redis

from gateway.jobs.queue import QUEUE_KEY
from tests.gateway.conftest import BUCKET, FRESH, s3_client
from tests.gateway.jobs.conftest import (
    EXPORT_SHARD,
    MANIFEST_BYTES,
    MAX_PHOTOS,
    MODELS,
    JobsEnv,
    all_results,
    api,
    put_photos,
    small_photos,
    wait_for_job,
    worker_process,
)
from tests.utils.http_server import serve_webhooks
from tests.utils.services import wait_until

pytestmark = pytest.mark.integration

# What of an analysis is the photo's answer: not its id, time, whether the store answered or
# how long it and each model took.
ANSWER = ("source", "image", "options", "results", "summary", "quality")


def _answer(analysis: dict[str, Any]) -> dict[str, Any]:
    models = [{k: v for k, v in run.items() if k != "latency_ms"} for run in analysis["models"]]
    return {"models": models, **{field: analysis[field] for field in ANSWER}}


def _answered(job: dict[str, Any]) -> int:
    counts = job["counts"]
    return int(counts["done"] + counts["skipped"] + counts["failed"])


def test_a_job_over_an_s3_prefix_answers_each_photo_as_v1_analyze_does(
    jobs_env: JobsEnv, photos: dict[str, np.ndarray]
) -> None:
    """60 photos: 56 distinct, 2 copies of two of them, a corrupt JPEG and one over
    PICMETRIC_MAX_IMAGE_PIXELS. 58 answers equal to /v1/analyze's (models run again, no-cache),
    2 failures with their errors, the album over the job with the copies grouped; another key's
    4-photo job sent just after it finishes first."""
    distinct = small_photos(photos, 56, seed=1)
    files = {f"p{i:02d}.jpg": data for i, data in enumerate(distinct)}
    files["p56.jpg"], files["p57.jpg"] = distinct[3], distinct[10]
    files["p58.jpg"] = distinct[0][:200] + bytes(range(256)) * 4  # a JPEG cut off, then noise
    big = np.full((1000, 1200, 3), 127, np.uint8)
    files["p59.jpg"] = cv2.imencode(".jpg", big)[1].tobytes()
    prefix = put_photos(jobs_env, "big", files)

    small_job = {"source": {"urls": [f"{prefix}p{i:02d}.jpg" for i in range(4)]}, "models": MODELS}
    with (
        api(jobs_env, "alice") as alice,
        api(jobs_env, "bob") as bob,
        worker_process(jobs_env, "big") as worker,
        serve_webhooks([200]) as (hook_url, hooks),
    ):
        small_job["webhook_url"] = hook_url  # sent by the worker that ends it
        body = {"source": {"s3_prefix": prefix}, "models": MODELS}
        submitted = alice.post("/v1/jobs", json=body)
        assert submitted.status_code == 202, submitted.text
        assert submitted.json()["counts"]["total"] == 60
        # Another key's small job, sent just after: it goes in behind the big job's window only.
        small = bob.post("/v1/jobs", json=small_job).raise_for_status().json()
        job = wait_for_job(alice, submitted.json()["id"], 150)
        small = wait_for_job(bob, small["id"], 10)
        wait_until(lambda: len(hooks) == 1, 10, "the small job's webhook")
        results = all_results(alice, job["id"])
        lines = alice.get(
            f"/v1/jobs/{job['id']}/results", headers={"Accept": "application/x-ndjson"}
        )
        metrics = httpx.get(worker.metrics_url).text
    assert 'picmetric_job_photos_total{outcome="failed"} 2.0' in metrics

    assert job["state"] == small["state"] == "done"
    assert small["finished_at"] < job["finished_at"]  # fair shares: not behind 60 photos
    hook = json.loads(hooks[0][2])
    assert (hook["id"], hook["state"]) == (small["id"], "done")
    assert small["warnings"] and hook["warnings"] == small["warnings"]  # random weights
    counts = job["counts"]
    assert (counts["total"], counts["done"] + counts["skipped"], counts["failed"]) == (60, 58, 2)
    assert job["photos_per_second"] > 0 and job["seconds_left"] is None
    assert [r["position"] for r in results] == list(range(60))
    assert [json.loads(line) for line in lines.text.splitlines()] == results
    failed = {r["source"].rsplit("/", 1)[1]: r["error"]["errortype"] for r in results if r["error"]}
    assert failed == {"p58.jpg": "unsupported_image", "p59.jpg": "image_too_large"}

    def analyze(source: str) -> dict[str, Any]:
        with api(jobs_env, "alice") as client:
            body = {"url": source, "models": MODELS}
            return dict(
                client.post("/v1/analyze", json=body, headers=FRESH).raise_for_status().json()
            )

    answered = [r for r in results if r["analysis"]]
    with ThreadPoolExecutor(4) as pool:
        direct = list(pool.map(analyze, [r["source"] for r in answered]))
    assert len(answered) == 58
    for result, analysis in zip(answered, direct, strict=True):
        assert _answer(result["analysis"]) == _answer(analysis), result["source"]

    album = job["album"]
    assert (album["images"], album["analysed"], album["failed"]) == (60, 58, 2)
    groups = [set(group["images"]) for group in album["groups"]]
    assert any({3, 56} <= group for group in groups) and any({10, 57} <= group for group in groups)
    assert album["scenes"] <= 56


def test_a_killed_worker_and_a_restarted_redis_lose_no_photo_and_answer_none_twice(
    jobs_env: JobsEnv, photos: dict[str, np.ndarray]
) -> None:
    """kill -9 of a worker holding photos, then Redis stopped (jobs refused 503 meanwhile) and
    started again from its append-only file: a second worker alone finishes the job, every
    photo answered exactly once."""
    names = [f"k{i:02d}.jpg" for i in range(24)]
    prefix = put_photos(
        jobs_env, "kill", dict(zip(names, small_photos(photos, 24, 2), strict=True))
    )
    body = {"source": {"s3_prefix": prefix}, "models": MODELS}
    with api(jobs_env, "carol") as carol:
        with worker_process(jobs_env, "doomed") as doomed:
            job_id = carol.post("/v1/jobs", json=body).raise_for_status().json()["id"]
            wait_until(
                lambda: _answered(carol.get(f"/v1/jobs/{job_id}").json()) >= 2, 60, "2 answers"
            )
            doomed.process.kill()
            doomed.process.wait(10)
        assert _answered(carol.get(f"/v1/jobs/{job_id}").json()) < 24  # it held photos

        jobs_env.redis.stop()
        refused = carol.post("/v1/jobs", json=body)
        assert refused.status_code == 503 and refused.json()["errortype"] == "queue_unavailable"
        jobs_env.redis.start()

        with worker_process(jobs_env, "rescuer"):
            job = wait_for_job(carol, job_id, 120)
        results = all_results(carol, job_id)

    assert job["state"] == "done"
    assert (job["counts"]["done"] + job["counts"]["skipped"], job["counts"]["failed"]) == (24, 0)
    assert [r["position"] for r in results] == list(range(24))
    assert [r["analysis"]["source"]["url"] for r in results] == [prefix + n for n in names]
    assert len({r["analysis"]["id"] for r in results}) == 24


def test_jobs_are_their_keys_resubmits_are_idempotent_and_cancel_stops_them(
    jobs_env: JobsEnv, photos: dict[str, np.ndarray]
) -> None:
    names = [f"c{i:02d}.jpg" for i in range(12)]
    prefix = put_photos(
        jobs_env, "cancel", dict(zip(names, small_photos(photos, 12, 3), strict=True))
    )
    body = {"source": {"s3_prefix": prefix}, "models": MODELS}
    with (
        api(jobs_env, "bob") as bob,
        api(jobs_env, "alice") as alice,
        serve_webhooks([200]) as (hook_url, hooks),
    ):
        hooked = {**body, "webhook_url": hook_url}
        first = bob.post("/v1/jobs", json=hooked, headers={"Idempotency-Key": "trip-1"})
        again = bob.post("/v1/jobs", json=hooked, headers={"Idempotency-Key": "trip-1"})
        assert (first.status_code, again.status_code) == (202, 200)
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        job_id = first.json()["id"]
        cancelled = bob.delete(f"/v1/jobs/{job_id}").raise_for_status().json()
        assert cancelled["state"] == "cancelled"
        # Its webhook, signed with the secret shown at submit; cancelling again sends none.
        wait_until(lambda: len(hooks) == 1, 10, "the cancelled job's webhook")
        assert bob.delete(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
        time.sleep(0.5)
        ((_, hook_headers, hook_body),) = hooks
        secret = first.json()["webhook_secret"]
        stamp, digest = (p.split("=", 1)[1] for p in hook_headers["Picmetric-Signature"].split(","))
        signed = hmac.new(secret.encode(), f"{stamp}.".encode() + hook_body, hashlib.sha256)
        assert hmac.compare_digest(digest, signed.hexdigest())
        hook = json.loads(hook_body)
        assert (hook["id"], hook["state"], hook["webhook_secret"]) == (job_id, "cancelled", None)
        # The job's warnings as its view gives them (the test models' random weights).
        assert cancelled["warnings"], cancelled
        assert hook["warnings"] == cancelled["warnings"]

        for method, path in (
            ("GET", f"/v1/jobs/{job_id}"),
            ("GET", f"/v1/jobs/{job_id}/results"),
            ("DELETE", f"/v1/jobs/{job_id}"),
        ):
            other = alice.request(method, path)
            assert (other.status_code, other.json()["errortype"]) == (404, "not_found")
        assert job_id not in {j["id"] for j in alice.get("/v1/jobs").json()["jobs"]}
        assert job_id in {j["id"] for j in bob.get("/v1/jobs").json()["jobs"]}
        # The same Idempotency-Key is another key's own.
        alices = alice.post("/v1/jobs", json=body, headers={"Idempotency-Key": "trip-1"})
        assert alices.status_code == 202 and alices.json()["id"] != job_id
        alice.delete(f"/v1/jobs/{alices.json()['id']}").raise_for_status()

        # A manifest of keys in its bucket, beside the cancelled job: answered while it is not.
        manifest = "# three of them\n" + "".join(f"jobs/cancel/{n}\n" for n in names[:3])
        s3_client(jobs_env.s3_url).put_object(Bucket=BUCKET, Key="jobs/list.txt", Body=manifest)
        listed = {"source": {"manifest": f"s3://{BUCKET}/jobs/list.txt"}, "models": MODELS}
        queue = redis.Redis.from_url(jobs_env.redis.url)
        with worker_process(jobs_env, "cancel"):
            manifest_job = bob.post("/v1/jobs", json=listed).raise_for_status().json()
            done = wait_for_job(bob, manifest_job["id"], 60)
            wait_until(lambda: queue.llen(QUEUE_KEY) == 0, 30, "the queue drained")
            time.sleep(1)
        job = bob.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "cancelled" and _answered(job) == 0
        assert bob.get(f"/v1/jobs/{job_id}/results").json()["results"] == []
        assert (done["state"], done["counts"]["done"] + done["counts"]["skipped"]) == ("done", 3)
        sources = [r["source"] for r in all_results(bob, done["id"])]
        assert sources == [f"{prefix}{n}" for n in names[:3]]
        # ResNet50 on random weights: the job, and a page of its results, say so, as /v1 does.
        (warning,) = done["warnings"]
        assert (warning["kind"], warning["models"]) == ("random_weights", ["resnet50"])
        for path in (f"/v1/jobs/{done['id']}", f"/v1/jobs/{done['id']}/results"):
            answer = bob.get(path)
            assert answer.json()["warnings"] == [warning], path
            assert answer.headers["X-Picmetric-Warnings"] == "random_weights=resnet50", path


def test_jobs_over_their_limits_are_refused_naming_the_setting(jobs_env: JobsEnv) -> None:
    s3 = s3_client(jobs_env.s3_url)
    s3.put_object(Bucket=BUCKET, Key="jobs/big.txt", Body=b"a.jpg\n" * (MANIFEST_BYTES // 6 + 1))
    urls = [f"s3://{BUCKET}/jobs/p{i}.jpg" for i in range(MAX_PHOTOS + 1)]
    cases = [
        ({"urls": urls}, 413, "job_too_large", "PICMETRIC_JOBS_MAX_PHOTOS"),
        ({"manifest": f"s3://{BUCKET}/jobs/big.txt"}, 413, "job_too_large", "MANIFEST_MAX_BYTES"),
        ({"s3_prefix": f"s3://{BUCKET}/elsewhere/"}, 403, "forbidden_url", "S3_READ_FROM"),
        ({"urls": urls[:1], "s3_prefix": "s3://x/"}, 422, "invalid_request", "exactly one"),
    ]
    with api(jobs_env, "bob") as bob:
        for source, status, errortype, named in cases:
            refused = bob.post("/v1/jobs", json={"source": source})
            assert refused.status_code == status, refused.text
            assert refused.json()["errortype"] == errortype and named in refused.json()["message"]
        open_jobs = [
            bob.post("/v1/jobs", json={"source": {"urls": urls[:2]}}).raise_for_status().json()
            for _ in range(2)
        ]
        refused = bob.post("/v1/jobs", json={"source": {"urls": urls[:2]}})
        assert (refused.status_code, refused.json()["errortype"]) == (429, "job_limit")
        assert "PICMETRIC_JOBS_MAX_RUNNING_PER_KEY" in refused.json()["message"]
        for job in open_jobs:
            bob.delete(f"/v1/jobs/{job['id']}").raise_for_status()


def test_a_job_writes_its_results_to_s3_as_json_lines_shards_when_asked(
    jobs_env: JobsEnv, photos: dict[str, np.ndarray]
) -> None:
    """5 photos, shards of EXPORT_SHARD results: part-00000.jsonl to part-00002.jsonl under the
    export's prefix, together the job's JSON Lines results byte for byte; a place outside
    PICMETRIC_JOBS_EXPORT_TO is refused at submit."""
    names = [f"e{i}.jpg" for i in range(5)]
    prefix = put_photos(
        jobs_env, "export", dict(zip(names, small_photos(photos, 5, 4), strict=True))
    )
    body = {"source": {"s3_prefix": prefix}, "models": MODELS}
    s3 = s3_client(jobs_env.s3_url)

    def shards() -> list[str]:
        listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/trip/")
        return sorted(entry["Key"] for entry in listing.get("Contents", []))

    with api(jobs_env, "carol") as carol:
        for place in (f"s3://{BUCKET}/jobs/out/", "s3://elsewhere/exports/"):
            refused = carol.post("/v1/jobs", json={**body, "export": place})
            assert (refused.status_code, refused.json()["errortype"]) == (403, "forbidden_url")
            assert "PICMETRIC_JOBS_EXPORT_TO" in refused.json()["message"]
        asked = {**body, "export": f"s3://{BUCKET}/exports/trip"}  # the '/' is added
        with worker_process(jobs_env, "export"):
            job = carol.post("/v1/jobs", json=asked).raise_for_status().json()
            assert job["options"]["export"] == f"s3://{BUCKET}/exports/trip/"
            assert wait_for_job(carol, job["id"], 90)["state"] == "done"
            wait_until(lambda: len(shards()) == 3, 30, "the export's shards")
        lines = carol.get(
            f"/v1/jobs/{job['id']}/results", headers={"Accept": "application/x-ndjson"}
        ).text
    assert shards() == [f"exports/trip/part-{n:05d}.jsonl" for n in range(3)]
    texts = [s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode() for key in shards()]
    assert [len(text.splitlines()) for text in texts] == [EXPORT_SHARD, EXPORT_SHARD, 1]
    assert "".join(texts) == lines and len(lines.splitlines()) == 5
