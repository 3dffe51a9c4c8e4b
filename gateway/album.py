"""Many photos in one request (`POST /v1/batch`): their analyses run together, so Triton's
dynamic batching groups their tensors, each photo fails alone with its own error, and an album
summary adds them up."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict, deque
from contextlib import ExitStack

from pydantic import BaseModel, ConfigDict

from gateway.analysis import AnalysisRequest, analyze, stored_source
from gateway.errors import PicmetricError
from gateway.results import Analysis
from gateway.schemas import ErrorBody
from gateway.services import Services

log = logging.getLogger(__name__)


class AlbumLabel(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    images: int  # photos whose ImageNet labels include it
    confidence: float  # its mean confidence over those photos


class Album(BaseModel):
    """What the album holds, added up over the photos that were analysed."""

    model_config = ConfigDict(frozen=True)

    images: int
    analysed: int
    failed: int
    people: int
    faces: int
    people_with_face: int
    objects: dict[str, int]
    labels: list[AlbumLabel]  # the most frequent first, then the most confident


class BatchItem(BaseModel):
    """One photo's outcome, in the order sent: its analysis, or its error."""

    model_config = ConfigDict(frozen=True)

    index: int
    analysis: Analysis | None = None
    error: ErrorBody | None = None


class BatchAnswer(BaseModel):
    model_config = ConfigDict(frozen=True)

    results: list[BatchItem]
    album: Album


def album_of(analyses: list[Analysis], failed: int, max_labels: int) -> Album:
    objects: Counter[str] = Counter()
    scores: dict[str, list[float]] = defaultdict(list)
    for analysis in analyses:
        objects.update(analysis.summary.objects)
        for found in analysis.results.resnet50 or []:
            scores[found.label].append(found.confidence)
    ranked = sorted(scores.items(), key=lambda item: (-len(item[1]), -sum(item[1])))
    return Album(
        images=len(analyses) + failed,
        analysed=len(analyses),
        failed=failed,
        people=sum(a.summary.people for a in analyses),
        faces=sum(a.summary.faces for a in analyses),
        people_with_face=sum(a.summary.people_with_face for a in analyses),
        objects=dict(objects),
        labels=[
            AlbumLabel(label=label, images=len(found), confidence=sum(found) / len(found))
            for label, found in ranked[:max_labels]
        ],
    )


async def _one(index: int, request: AnalysisRequest, services: Services, owner: str) -> BatchItem:
    try:
        return BatchItem(index=index, analysis=await analyze(request, services, owner))
    except PicmetricError as exc:
        source = stored_source(request)
        log.info("Batch photo %d (%s) failed: %s %s", index, source, exc.errortype, exc)
        return BatchItem(index=index, error=ErrorBody(errortype=exc.errortype, message=str(exc)))
    except Exception:  # a bug must not take the other photos down with it
        log.exception("Batch photo %d (%s) failed unexpectedly", index, stored_source(request))
        message = "The gateway failed unexpectedly on this photo; the error was logged."
        return BatchItem(index=index, error=ErrorBody(errortype="internal_error", message=message))


def _has_free_slot(services: Services) -> bool:
    admission = services.admission
    return admission.in_flight < admission.limit


async def analyze_album(
    requests: list[AnalysisRequest], services: Services, owner: str
) -> BatchAnswer:
    """The photos analysed together (their tensors share Triton's dynamic batches), answered in
    the order sent. Each running photo holds one of the process's analysis slots: the batch
    takes its first at once (503 overloaded when none is free) and more as its photos start,
    while slots are free; a slot carries the batch's next photo or is given back, so a batch
    never holds a slot for a photo that is not running. The same URL twice is analysed once."""
    first_of: dict[tuple[str, str], int] = {}
    for index, request in enumerate(requests):
        if request.data is None:  # uploads are each their own
            first_of.setdefault((request.source_kind, request.source), index)
    todo = deque(
        i
        for i, r in enumerate(requests)
        if r.data is not None or first_of[(r.source_kind, r.source)] == i
    )
    items: dict[int, BatchItem] = {}
    first_slot = ExitStack()
    first_slot.enter_context(services.admission.admit())  # or 503 overloaded

    async with asyncio.TaskGroup() as group:

        def start(index: int, slot: ExitStack | None = None) -> None:
            """A worker on `slot` or one taken now, given back when the worker ends, even if it
            was cancelled before it ran."""
            if slot is None:
                slot = ExitStack()
                slot.enter_context(services.admission.admit())
            group.create_task(run(index)).add_done_callback(lambda _: slot.close())

        async def run(index: int) -> None:
            """Photos one after another on one slot; more workers while slots are free."""
            while True:
                while todo and _has_free_slot(services):
                    start(todo.popleft())
                items[index] = await _one(index, requests[index], services, owner)
                if not todo:
                    return
                index = todo.popleft()

        start(todo.popleft(), first_slot)
    ordered = [
        items[i if r.data is not None else first_of[(r.source_kind, r.source)]].model_copy(
            update={"index": i}
        )
        for i, r in enumerate(requests)
    ]
    analyses = [item.analysis for item in ordered if item.analysis is not None]
    max_labels = max((r.options.max_results for r in requests), default=0)
    return BatchAnswer(
        results=ordered, album=album_of(analyses, len(ordered) - len(analyses), max_labels)
    )
