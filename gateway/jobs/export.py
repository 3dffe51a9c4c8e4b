"""A job's results written to S3 as JSON Lines shards when its submitter asked (`export`, a place
within PICMETRIC_JOBS_EXPORT_TO): `part-00000.jsonl`, `part-00001.jsonl`, ... under the export's
prefix, each of at most jobs_export_shard_results results in the job's order, each line the JSON
of GET /v1/jobs/{id}/results's JSON Lines. Written by the worker that finishes the job, before
its webhook, one shard in memory at a time; writing again replaces the same keys."""

from __future__ import annotations

import logging

from gateway.intake import s3 as s3_objects
from gateway.jobs.results import job_results
from gateway.services import Services
from gateway.store.storage import JobRow

log = logging.getLogger(__name__)

JSONL = "application/x-ndjson"


def shard_key(prefix: str, number: int) -> str:
    return f"{prefix}part-{number:05d}.jsonl"


async def export_results(services: Services, job: JobRow, url: str) -> list[str]:
    """Write the job's results under `url` (checked against PICMETRIC_JOBS_EXPORT_TO again: the
    setting may have changed since the submit); the s3:// URLs of the shards written."""
    settings = services.settings
    bucket, prefix = s3_objects.check_writable_prefix(url, settings.jobs_export_to)
    written: list[str] = []
    after = -1
    while page := await job_results(services.jobs, job, after, settings.jobs_export_shard_results):
        data = b"".join(result.model_dump_json().encode() + b"\n" for result in page)
        key = shard_key(prefix, len(written))
        await s3_objects.write(services.s3, bucket, key, data, JSONL)
        written.append(f"s3://{bucket}/{key}")
        after = page[-1].position
    log.info("Job %s: results in %d shards under s3://%s/%s", job.id, len(written), bucket, prefix)
    return written
