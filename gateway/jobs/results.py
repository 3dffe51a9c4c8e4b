"""A job's answered photos as its results (`JobResult`: each photo's analysis, as GET
/v1/analyses/{id}, or its error), read a page at a time: what GET /v1/jobs/{id}/results answers
and what an export writes, one and the same JSON."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from gateway.errors import ErrorBody
from gateway.pipeline.answers import stored_analysis
from gateway.results import Analysis
from gateway.store.jobs import JobStore
from gateway.store.storage import JobItemRow, JobRow


class JobResult(BaseModel):
    """One answered photo of a job: its analysis (as GET /v1/analyses/{id}) or its error."""

    position: int = Field(description="the photo's place in the job's source, from 0")
    source: str
    state: Literal["done", "skipped", "failed"]
    analysis: Analysis | None = None
    error: ErrorBody | None = None


async def job_results(jobs: JobStore, job: JobRow, after: int, limit: int) -> list[JobResult]:
    """The job's answered photos after position `after`, in order, at most `limit`."""
    items = await jobs.items(job.id, after, limit)
    rows = await jobs.analyses([i.analysis_id for i in items if i.analysis_id], job.owner)
    return [_result(item, rows) for item in items]


def _result(item: JobItemRow, rows: dict[str, Any]) -> JobResult:
    common = {"position": item.position, "source": item.source, "state": item.state}
    if item.state == "failed":
        error = ErrorBody(errortype=item.error_type or "", message=item.error_message or "")
        return JobResult(**common, error=error)
    row = rows.get(item.analysis_id or "")
    if row is None:
        error = ErrorBody(errortype="not_found", message="The photo's analysis is not stored.")
        return JobResult(**common, error=error)
    return JobResult(**common, analysis=stored_analysis(row, cached=True))
