"""`picmetric jobs` end to end (picmetric/jobs_client.py), as a person runs it: a local folder
uploaded through /v1/images and submitted as a job, followed to its end with the progress line,
its results written as JSON Lines, its status and the key's list read back. Against the real
gateway, Redis, PostgreSQL, moto's S3 and Triton, and a `picmetric worker` (the fixtures of
tests/gateway/jobs/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.gateway.conftest import BUCKET, s3_client
from tests.gateway.jobs.conftest import MODELS, JobsEnv, small_photos, worker_process
from tests.utils.services import wait_until

pytestmark = pytest.mark.integration


def _picmetric(jobs_env: JobsEnv, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "picmetric", "jobs", *args, "--gateway", jobs_env.url]
    env = {**os.environ, "PICMETRIC_API_KEY": jobs_env.keys["alice"]}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_a_folder_is_uploaded_followed_to_its_end_and_its_results_written(
    jobs_env: JobsEnv, photos: dict[str, np.ndarray], tmp_path: Path
) -> None:
    folder = tmp_path / "trip"
    folder.mkdir()
    for n, data in enumerate(small_photos(photos, 3, 7)):
        (folder / f"{n}.jpg").write_bytes(data)
    (folder / "notes.txt").write_text("not a photo")
    export = f"s3://{BUCKET}/exports/cli/"
    with worker_process(jobs_env, "cli"):
        submitted = _picmetric(
            jobs_env,
            "submit",
            str(folder),
            "--follow",
            "--models",
            ",".join(MODELS),
            "--export",
            export,
            "--min-face-size",
            "13px",  # passed to every photo's analysis by the worker
        )
    assert submitted.returncode == 0, submitted.stderr
    assert "uploaded 3/3" in submitted.stderr
    final = submitted.stdout.strip().splitlines()[-1]
    job_id, state = final.split()[:2]
    assert state == "done" and "3/3" in final, final
    assert "3/3" in submitted.stderr  # the progress line while it ran

    out = tmp_path / "out.jsonl"
    written = _picmetric(jobs_env, "results", job_id, "-o", str(out))
    assert written.returncode == 0, written.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["position"] for r in results] == [0, 1, 2]
    assert all(r["state"] in ("done", "skipped") for r in results), [r["error"] for r in results]
    assert all(r["analysis"]["models"] for r in results)
    face_sizes = {
        (r["analysis"]["options"]["min_face_size"], r["analysis"]["options"]["min_face_px"])
        for r in results
    }
    assert face_sizes == {("13px", 13.0)}
    # --export: the worker wrote the same results under the prefix (shards of EXPORT_SHARD).
    s3 = s3_client(jobs_env.s3_url)

    def exported() -> list[str]:
        listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/cli/")
        return sorted(entry["Key"] for entry in listing.get("Contents", []))

    wait_until(lambda: len(exported()) == 2, 30, "the export's shards")
    shards = [s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in exported()]
    assert [json.loads(line) for shard in shards for line in shard.splitlines()] == results

    status = _picmetric(jobs_env, "status", job_id, "--json")
    assert json.loads(status.stdout)["counts"]["total"] == 3
    assert json.loads(status.stdout)["options"]["min_face_size"] == "13px"
    listed = _picmetric(jobs_env, "list")
    assert any(line.startswith(job_id) for line in listed.stdout.splitlines())
    missing = _picmetric(jobs_env, "status", "no-such-job")
    assert missing.returncode == 3 and "404" in missing.stderr  # ExitCode.BAD_INPUT
