"""What a job says of itself: state, counts, photos per second and the time left (`JobView`, the
JSON of GET /v1/jobs/{id} and of the webhook); and the album over its answered photos, added up
once when its last photo is answered."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from core.models import OFFERED_MODELS
from gateway.pipeline import album as albums
from gateway.pipeline.answers import stored_analysis
from gateway.results import Analysis, AnswerWarning
from gateway.store.jobs import JobStore, now
from gateway.store.storage import JobRow
from gateway.triton.catalog import ModelState

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
ALBUM_PAGE = 500  # analyses read at once while adding up a job's album


class JobSource(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["s3_prefix", "urls", "manifest"]
    description: str  # the prefix or manifest's s3:// URL, or "N URLs"


class JobCounts(BaseModel):
    model_config = ConfigDict(frozen=True)

    total: int
    done: int  # analysed
    skipped: (
        int  # answered from the store: the key had the same bytes analysed with the same options
    )
    failed: int  # each with its error in the results

    @property
    def answered(self) -> int:
        return self.done + self.skipped + self.failed


class JobView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    state: JobState
    source: JobSource
    options: dict[str, Any]
    counts: JobCounts
    photos_per_second: float | None  # answered photos over the time since the first started
    seconds_left: float | None  # at that pace; None once finished or before a photo is answered
    created_at: str
    started_at: str | None
    finished_at: str | None
    webhook_url: str | None
    # Shown once, in the answer to the submit that created the job: it signs the webhook.
    webhook_secret: str | None = None
    album: albums.Album | None = None  # once done: the album over the job's answered photos
    # The job's models on random weights now (its album and findings are noise); each photo's
    # analysis has its own warnings.
    warnings: list[AnswerWarning] = []


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite drops the zone; every stored time is UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _iso(moment: dt.datetime | None) -> str | None:
    utc = _utc(moment)
    return None if utc is None else utc.isoformat()


def job_warnings(job: JobRow, states: Mapping[str, ModelState]) -> list[AnswerWarning]:
    """The random-weights warning for the models `job` runs (every one served when it names
    none), by what `states` say of their weights."""
    models = job.options.get("models") or [name for name in OFFERED_MODELS if name in states]
    random = [m for m in models if m in states and states[m].weights.get("kind") == "random"]
    return [AnswerWarning.random_weights(random)] if random else []


def job_view(
    job: JobRow, with_secret: bool = False, states: Mapping[str, ModelState] | None = None
) -> JobView:
    """The job as answered; `states`, the catalog's models, for its warnings (none without)."""
    counts = JobCounts(total=job.total, done=job.done, skipped=job.skipped, failed=job.failed)
    started, finished = _utc(job.started_at), _utc(job.finished_at)
    rate = seconds_left = None
    if started is not None and counts.answered:
        elapsed = ((finished or now()) - started).total_seconds()
        rate = round(counts.answered / elapsed, 3) if elapsed > 0 else None
        if rate and finished is None:
            seconds_left = round((counts.total - counts.answered) / rate, 1)
    return JobView(
        id=job.id,
        state=job.state,
        source=JobSource(kind=job.source_kind, description=job.source),
        options=job.options,
        counts=counts,
        photos_per_second=rate,
        seconds_left=seconds_left,
        created_at=_iso(job.created_at) or "",
        started_at=_iso(started),
        finished_at=_iso(finished),
        webhook_url=job.webhook_url,
        webhook_secret=job.webhook_secret if with_secret else None,
        album=None if job.album is None else albums.Album.model_validate(job.album),
        warnings=job_warnings(job, states or {}),
    )


async def job_album(jobs: JobStore, job: JobRow) -> albums.Album:
    """The album over the job's answered photos, each known by its position in the job (an
    AlbumGroup's `images`), read a page at a time."""
    analysed: dict[int, Analysis] = {}
    failed, after = 0, -1
    while page := await jobs.items(job.id, after, ALBUM_PAGE):
        rows = await jobs.analyses([i.analysis_id for i in page if i.analysis_id], job.owner)
        for item in page:
            row = rows.get(item.analysis_id or "")
            if row is None:
                failed += 1
            else:
                analysed[item.position] = stored_analysis(row, cached=True)
        after = page[-1].position
    max_labels = int(job.options.get("max_results") or 0)
    return albums.album_of(list(analysed.values()), failed, max_labels, albums.groups_of(analysed))
