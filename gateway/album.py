"""Many photos in one request (`POST /v1/batch`): their analyses run together, so Triton's
dynamic batching groups their tensors, each photo fails alone with its own error, and an album
summary adds them up."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict

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


async def analyze_album(
    requests: list[AnalysisRequest], services: Services, owner: str, concurrency: int
) -> BatchAnswer:
    """The photos analysed `concurrency` at a time (their tensors share Triton's dynamic
    batches); answers in the order sent."""
    slots = asyncio.Semaphore(concurrency)

    async def one(index: int, request: AnalysisRequest) -> BatchItem:
        async with slots:
            return await _one(index, request, services, owner)

    items = await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    analyses = [item.analysis for item in items if item.analysis is not None]
    max_labels = max((r.options.max_results for r in requests), default=0)
    return BatchAnswer(
        results=items, album=album_of(analyses, len(items) - len(analyses), max_labels)
    )
