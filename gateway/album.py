"""Many photos in one request (`POST /v1/batch`): their analyses run together, so Triton's
dynamic batching groups their tensors, each photo fails alone with its own error, and an album
summary adds them up."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter, defaultdict, deque
from contextlib import ExitStack

from pydantic import BaseModel, ConfigDict

from gateway import metrics, rendering
from gateway.analysis import AnalysisRequest, analyze, stored_source
from gateway.errors import UNEXPECTED, PicmetricError
from gateway.quality import hash_distance
from gateway.results import Analysis
from gateway.schemas import ErrorBody
from gateway.services import Services

log = logging.getLogger(__name__)

# Perceptual-hash distances (bits of 64) under which two photos are one scene, measured on 19 of
# scikit-image's photos (`python -m benchmarks.albums`): of their 171 pairs, none is closer
# than 20 bits (5 % under 26). Copies blurred, recompressed, noisier, 1.3 times brighter or
# darker are 0-4 bits away (one, the colour wheel brightened, 14); shifted by 8 px, 2-12 (one 18),
# by 3 % of the width, 4-22, most under 16. So: NEAR_BITS for any two photos, with 10 bits to
# spare before the closest distinct pair; BURST_BITS when EXIF says they were taken within
# BURST_SECONDS of each other (a hand-held burst moves), still 4 bits from the closest pair.
NEAR_BITS = 10
BURST_BITS = 16
BURST_SECONDS = 5


class AlbumLabel(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    images: int  # photos whose ImageNet labels include it
    confidence: float  # its mean confidence over those photos


class AlbumGroup(BaseModel):
    """Photos of one scene: copies, near-duplicates or a burst."""

    model_config = ConfigDict(frozen=True)

    images: list[int]  # their indices in the batch, ascending
    best: int  # the index of its best shot (`best_shot`)


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
    scenes: int  # photos analysed, each group of copies or a burst counted once
    groups: list[AlbumGroup]  # the groups of two photos or more, by their first index


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


def _taken_at(analysis: Analysis) -> dt.datetime | None:
    taken_at = analysis.image.taken_at
    return dt.datetime.fromisoformat(taken_at) if taken_at else None


def same_scene(a: Analysis, b: Analysis) -> bool:
    """Near-duplicates by their perceptual hashes; a looser distance for a burst, when EXIF says
    they were taken within seconds of each other. Photos stored without a hash are no one's."""
    if a.image.phash is None or b.image.phash is None:
        return False
    distance = hash_distance(a.image.phash, b.image.phash)
    if distance <= NEAR_BITS:
        return True
    first, second = _taken_at(a), _taken_at(b)
    if first is None or second is None or distance > BURST_BITS:
        return False
    return abs((first - second).total_seconds()) <= BURST_SECONDS


def _face_weight(analysis: Analysis) -> float:
    """MTCNN's faces, each by its confidence times its height's share of the photo's."""
    return sum(
        face.confidence * (face.box.y_max - face.box.y_min) / max(1, analysis.image.height)
        for face in analysis.results.mtcnn or []
    )


def best_shot(photos: dict[int, Analysis]) -> int:
    """The index of the best of one scene's photos: the highest product of its sharpness
    relative to the sharpest's (0-1), its exposure (1 less its mean luminance's distance from
    mid grey and half its clipped share, 0-1) and its faces relative to the most of them
    (0.5-1; 1 in a scene without faces). Sharpness differs most in a burst (a blurred shot reads
    10 times less), exposure and faces tip the balance between shots about as sharp. The first
    index wins a tie; a photo without figures (stored before them) ranks last."""
    measured = {i: a.quality for i, a in photos.items() if a.quality is not None}
    if not measured:
        return min(photos)
    sharpest = max(q.sharpness for q in measured.values()) or 1.0
    faces = {i: _face_weight(photos[i]) for i in measured}
    most_faces = max(faces.values())

    def score(index: int) -> float:
        quality = measured[index]
        exposed = 1 - abs(quality.exposure - 0.5) - (quality.shadows + quality.highlights) / 2
        with_faces = 0.5 + 0.5 * faces[index] / most_faces if most_faces > 0 else 1.0
        return quality.sharpness / sharpest * max(0.0, exposed) * with_faces

    return max(sorted(measured), key=score)


def groups_of(photos: dict[int, Analysis]) -> list[AlbumGroup]:
    """The batch's photos (by index) of one scene grouped: any two that `same_scene` finds join
    their groups (single linkage), each group naming its best shot."""
    parent = {i: i for i in photos}

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    indices = sorted(photos)
    for n, i in enumerate(indices):
        for j in indices[n + 1 :]:
            if root(i) != root(j) and same_scene(photos[i], photos[j]):
                parent[max(root(i), root(j))] = min(root(i), root(j))
    members: dict[int, list[int]] = defaultdict(list)
    for i in indices:
        members[root(i)].append(i)
    return [
        AlbumGroup(images=group, best=best_shot({i: photos[i] for i in group}))
        for group in members.values()
        if len(group) > 1
    ]


def album_of(
    analyses: list[Analysis],
    failed: int,
    max_labels: int,
    groups: list[AlbumGroup] | None = None,
) -> Album:
    groups = groups or []
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
        scenes=len(analyses) - sum(len(group.images) - 1 for group in groups),
        groups=groups,
    )


async def _one(index: int, request: AnalysisRequest, services: Services, owner: str) -> BatchItem:
    try:
        return BatchItem(index=index, analysis=await analyze(request, services, owner))
    except PicmetricError as exc:
        source = stored_source(request)
        log.info("Batch photo %d (%s) failed: %s %s", index, source, exc.errortype, exc)
        return _failed(index, exc)
    except Exception:  # a bug must not take the other photos down with it
        log.exception("Batch photo %d (%s) failed unexpectedly", index, stored_source(request))
        return _failed(index, PicmetricError(UNEXPECTED))


def _failed(index: int, exc: PicmetricError) -> BatchItem:
    """A photo's error, in /v1's error shape and counted as a request's error is (gateway.main
    renders those; a batch answers 200 with its photos' errors inside)."""
    metrics.ERRORS.labels(exc.errortype).inc()
    body = rendering.v1_error(exc.errortype, str(exc))
    return BatchItem(index=index, error=ErrorBody.model_validate(body))


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
    analysed = {item.index: item.analysis for item in ordered if item.analysis is not None}
    analyses = list(analysed.values())
    max_labels = max((r.options.max_results for r in requests), default=0)
    failed = len(ordered) - len(analyses)
    album = album_of(analyses, failed, max_labels, groups_of(analysed))
    return BatchAnswer(results=ordered, album=album)
