"""Bulk jobs: submit one over an S3 prefix, a list of URLs or a manifest; follow it; read its
answers a page at a time or as JSON Lines; cancel it. A job is its API key's alone: another
key's is 404, as a missing one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from gateway.errors import ErrorBody, JobNotFound, error_statuses
from gateway.http import bodies, rendering
from gateway.http.deps import (
    JobQueueDep,
    OwnerDep,
    ServicesDep,
    limit_rate,
    request_owner,
    require_api_key,
)
from gateway.http.schemas import JobList, JobRequest, JobResults
from gateway.http.strict import known_query
from gateway.jobs.progress import JobView, job_view
from gateway.jobs.results import job_results
from gateway.jobs.submit import submit
from gateway.jobs.webhooks import send_job_ended
from gateway.pipeline.album import batch_warnings
from gateway.services import Services
from gateway.store.storage import JobRow

router = APIRouter(
    prefix="/v1/jobs",
    tags=["jobs"],
    # The owner (cached for the routes that take it) is known before the query is checked.
    dependencies=[
        Depends(require_api_key),
        Depends(limit_rate),
        Depends(request_owner),
        Depends(known_query),
    ],
    responses={code: {"model": ErrorBody} for code in error_statuses()},
)

NDJSON = "application/x-ndjson"
RESULTS_PAGE = 100  # results in one page by default
MAX_RESULTS_PAGE = 500  # and at most
STREAM_PAGE = 200  # results read at once while streaming JSON Lines
IDEMPOTENCY_KEY_CHARS = 200
CURSOR = r"^[0-9]{1,12}$"  # what `next_cursor` holds: a number

_SUBMIT = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": JobRequest.model_json_schema()}},
    }
}


async def _job(services: Services, job_id: str, owner: str) -> JobRow:
    job = await services.jobs.get(job_id, owner)
    if job is None:
        raise JobNotFound(f"No job with id '{job_id}'.")
    return job


def _view(
    job: JobRow, services: Services, response: Response, with_secret: bool = False
) -> dict[str, Any]:
    """The job as JSON, with the warnings of its models now, their kinds also in a header."""
    view = job_view(job, with_secret, services.catalog.states)
    response.headers.update(rendering.warnings_header(view.warnings))
    return view.model_dump(mode="json")


def _cursor(cursor: str | None) -> int:
    return -1 if cursor is None else int(cursor)


@router.post("", response_model=JobView, status_code=202, openapi_extra=_SUBMIT)
async def submit_job(
    request: Request,
    response: Response,
    services: ServicesDep,
    queue: JobQueueDep,
    owner: OwnerDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=IDEMPOTENCY_KEY_CHARS,
            description="the same key again answers the job it made (200), not a new one",
        ),
    ] = None,
) -> dict[str, Any]:
    """Analyse every photo of an S3 prefix, a list of URLs or a manifest as a job, with the
    options of /v1/analyze; answered at once with the job (and, once, its webhook's secret)."""
    spec = await bodies.job_spec(request, services)
    submitted = await submit(spec, services, queue, owner, idempotency_key)
    if not submitted.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return _view(submitted.job, services, response, with_secret=True)


@router.get("", response_model=JobList)
async def list_jobs(
    services: ServicesDep,
    owner: OwnerDep,
    cursor: Annotated[str | None, Query(pattern=CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """This API key's jobs, newest first."""
    offset = max(0, _cursor(cursor))
    jobs = await services.jobs.list_jobs(owner, offset, limit + 1)
    more = len(jobs) > limit
    return JobList(
        jobs=[job_view(job, states=services.catalog.states) for job in jobs[:limit]],
        next_cursor=str(offset + limit) if more else None,
    ).model_dump(mode="json")


@router.get("/{job_id}", response_model=JobView)
async def read_job(
    job_id: str, response: Response, services: ServicesDep, owner: OwnerDep
) -> dict[str, Any]:
    """A job: state, counts, photos per second, time left, and its album once done."""
    return _view(await _job(services, job_id, owner), services, response)


@router.get(
    "/{job_id}/results",
    response_model=JobResults,
    responses={200: {"content": {NDJSON: {}}}},
)
async def read_job_results(
    job_id: str,
    request: Request,
    response: Response,
    services: ServicesDep,
    owner: OwnerDep,
    cursor: Annotated[str | None, Query(pattern=CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RESULTS_PAGE)] = RESULTS_PAGE,
) -> Any:
    """The job's answered photos in their order, a page at a time; with `Accept:
    application/x-ndjson` all of them from `cursor` on, streamed one JSON object a line."""
    job = await _job(services, job_id, owner)
    after = _cursor(cursor)
    if NDJSON in request.headers.get("accept", ""):
        return StreamingResponse(_stream(services, job, after), media_type=NDJSON)
    results = await job_results(services.jobs, job, after, limit + 1)
    more = len(results) > limit
    page = results[:limit]
    next_cursor = str(page[-1].position) if more else None
    warnings = batch_warnings([result.analysis for result in page if result.analysis])
    response.headers.update(rendering.warnings_header(warnings))
    answer = JobResults(results=page, next_cursor=next_cursor, warnings=warnings)
    return answer.model_dump(mode="json")


async def _stream(services: Services, job: JobRow, after: int) -> AsyncIterator[bytes]:
    while page := await job_results(services.jobs, job, after, STREAM_PAGE):
        for result in page:
            yield result.model_dump_json().encode() + b"\n"
        after = page[-1].position


@router.delete("/{job_id}", response_model=JobView)
async def cancel_job(
    job_id: str,
    response: Response,
    services: ServicesDep,
    owner: OwnerDep,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Cancel a job: no photo of it starts after this (those being analysed finish), and its
    webhook is sent (state cancelled); a finished job is answered as it is."""
    job, cancelled = await services.jobs.cancel(job_id, owner)
    if job is None:
        raise JobNotFound(f"No job with id '{job_id}'.")
    if cancelled:  # after the answer: its tries and back-off never hold the client
        states = services.catalog.states
        background.add_task(send_job_ended, job, services.http, services.settings, states)
    return _view(job, services, response)
