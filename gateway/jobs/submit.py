"""A job from a source: an S3 prefix (a bounded listing), a list of URLs, or a manifest in S3 (one
key or URL per line, bounded in bytes and lines); the key's limits checked; stored with one
pending item per photo; its first window of photos queued."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Literal

from gateway import tracing
from gateway.errors import (
    InvalidRequest,
    JobLimit,
    JobTooLarge,
    PicmetricError,
    QueueUnavailable,
    size_text,
)
from gateway.intake import s3 as s3_objects
from gateway.intake import urlguard
from gateway.jobs.queue import JobQueue
from gateway.results import SOURCE_CHARS, Options, new_id
from gateway.services import Services
from gateway.store.jobs import now
from gateway.store.storage import JobRow

log = logging.getLogger(__name__)

SourceKind = Literal["s3_prefix", "urls", "manifest"]


@dataclass(frozen=True)
class JobSpec:
    """What a job is asked: its source (a prefix, a manifest's s3:// URL, or the URLs), the
    analysis options, an optional webhook and export place."""

    kind: SourceKind
    source: str | list[str]
    models: list[str] | None
    options: Options
    webhook_url: str | None = None
    export: str | None = None  # s3://bucket/prefix/: the results written there once done


@dataclass(frozen=True)
class Submitted:
    job: JobRow
    created: bool  # False: an earlier submit with the same Idempotency-Key made it


def _too_many(count: str, limit: int) -> JobTooLarge:
    return JobTooLarge(
        f"The job's source holds {count} photos, more than the {limit} of one job "
        "(PICMETRIC_JOBS_MAX_PHOTOS); split it into several jobs."
    )


def _manifest_too_large(limit: int) -> PicmetricError:
    return JobTooLarge(
        f"The manifest is larger than {size_text(limit)} (PICMETRIC_JOBS_MANIFEST_MAX_BYTES); "
        "split it into several jobs."
    )


def manifest_sources(text: str, manifest_url: str) -> list[str]:
    """The photos a manifest lists: one per line, a URL (http(s):// or s3://) or a key in the
    manifest's bucket; blank lines and lines starting with '#' left out."""
    bucket, _ = s3_objects.split_s3_url(manifest_url)
    sources = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        sources.append(line if "://" in line else f"s3://{bucket}/{line.lstrip('/')}")
    return sources


async def expand(spec: JobSpec, services: Services, owner: str) -> list[str]:
    """The job's photos, in order; JobTooLarge past PICMETRIC_JOBS_MAX_PHOTOS."""
    settings = services.settings
    limit = settings.jobs_max_photos
    readable, uploads = settings.s3_readable, settings.s3_bucket
    if spec.kind == "urls":
        assert isinstance(spec.source, list)
        sources = spec.source
    elif spec.kind == "s3_prefix":
        assert isinstance(spec.source, str)
        sources, more = await s3_objects.list_prefix(
            services.s3, spec.source, limit, readable, owner, uploads
        )
        if more:
            raise _too_many(f"more than {limit}", limit)
    else:
        assert isinstance(spec.source, str)
        data = await s3_objects.read(
            services.s3,
            spec.source,
            settings.jobs_manifest_max_bytes,
            readable,
            owner,
            uploads,
            too_large=_manifest_too_large,
        )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"The manifest {spec.source} is not UTF-8 text.") from exc
        sources = manifest_sources(text, spec.source)
    if len(sources) > limit:
        raise _too_many(str(len(sources)), limit)
    if not sources:
        raise InvalidRequest("The job's source holds no photos.")
    if any(len(source) > SOURCE_CHARS for source in sources):
        raise InvalidRequest(f"A photo's URL in the job's source is longer than {SOURCE_CHARS}.")
    return sources


async def check_load(services: Services, owner: str, photos: int) -> None:
    """JobLimit when `owner`'s open jobs, with this one, would pass the key's limits."""
    settings = services.settings
    running, left = await services.jobs.load(owner)
    if running >= settings.jobs_max_running_per_key:
        raise JobLimit(
            f"This API key already has {running} jobs queued or running, as many as it may "
            "(PICMETRIC_JOBS_MAX_RUNNING_PER_KEY); submit this one when one has finished."
        )
    if left + photos > settings.jobs_max_queued_photos_per_key:
        raise JobLimit(
            f"This API key's jobs have {left} photos still to answer; with this job's {photos} "
            f"that is more than {settings.jobs_max_queued_photos_per_key} "
            "(PICMETRIC_JOBS_MAX_QUEUED_PHOTOS_PER_KEY). Submit it when more are done."
        )


async def submit(
    spec: JobSpec,
    services: Services,
    queue: JobQueue | None,
    owner: str,
    idempotency_key: str | None,
) -> Submitted:
    """Store the job and queue its first window; an earlier job of `owner` under the same
    `idempotency_key` is answered instead (nothing new is made or checked)."""
    if idempotency_key is not None:
        earlier = await services.jobs.by_idempotency_key(owner, idempotency_key)
        if earlier is not None:
            return Submitted(earlier, created=False)
    if queue is None:
        raise QueueUnavailable("Jobs need Redis: the operator sets PICMETRIC_REDIS_URL.")
    await queue.check()
    if spec.webhook_url is not None:
        await urlguard.check_http_url(spec.webhook_url, services.settings.allow_private_urls)
    export = None
    if spec.export is not None:
        bucket, prefix = s3_objects.check_writable_prefix(
            spec.export, services.settings.jobs_export_to
        )
        export = f"s3://{bucket}/{prefix}"
    sources = await expand(spec, services, owner)
    await check_load(services, owner, len(sources))
    description = f"{len(sources)} URLs" if isinstance(spec.source, list) else spec.source
    job = JobRow(
        id=new_id(),
        owner=owner,
        state="queued",
        source_kind=spec.kind,
        source=description,
        options={
            "models": spec.models,
            **spec.options.model_dump(exclude={"min_face_px"}),  # per photo: its analysis's
            **({"export": export} if export else {}),
        },
        webhook_url=spec.webhook_url,
        webhook_secret=secrets.token_hex(32) if spec.webhook_url else None,
        idempotency_key=idempotency_key,
        total=len(sources),
        done=0,
        failed=0,
        skipped=0,
        created_at=now(),
        traceparent=tracing.traceparent(),
    )
    job, created = await services.jobs.create(job, sources)
    if created:
        positions = await services.jobs.claim(job.id, services.settings.jobs_window, None)
        try:
            await queue.send(job.id, positions)
        except QueueUnavailable as exc:  # stored and queued: the workers' sweep sends them
            log.warning("Job %s stored; its first photos wait for the sweep: %s", job.id, exc)
    return Submitted(job, created)
