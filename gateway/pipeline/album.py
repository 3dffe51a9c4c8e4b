"""Many photos in one request (`POST /v1/batch`): their analyses run together, so Triton's
dynamic batching groups their tensors, each photo fails alone with its own error, and an album
summary adds them up."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import ExitStack

import numpy as np
from pydantic import BaseModel, ConfigDict

from gateway import metrics, tenancy, tracing
from gateway.errors import UNEXPECTED, ErrorBody, Overloaded, PicmetricError
from gateway.images.quality import hash_distance
from gateway.intake.fetch import fetch_identity
from gateway.pipeline.analysis import analyze_keeping_photo, fetched
from gateway.pipeline.request import AnalysisRequest
from gateway.results import Analysis, AnswerWarning
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
    """What the album holds, added up over the photos that were analysed. A figure is None ("not
    counted") unless every photo analysed counted it (its model ran on each)."""

    model_config = ConfigDict(frozen=True)

    images: int
    analysed: int
    failed: int
    people: int | None
    faces: int | None
    people_with_face: int | None
    objects: dict[str, int] | None
    labels: list[AlbumLabel] | None  # the most frequent first, then the most confident
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
    warnings: list[AnswerWarning] = []  # each kind and set of models once, from every photo


def batch_warnings(analyses: list[Analysis]) -> list[AnswerWarning]:
    """The photos' warnings, each kind for the same models once (the first photo's words: a
    reduced photo's names its size; each photo's own are in its analysis)."""
    seen: dict[tuple[str, tuple[str, ...]], AnswerWarning] = {}
    for analysis in analyses:
        for warning in analysis.warnings:
            seen.setdefault((warning.kind, tuple(warning.models)), warning)
    return list(seen.values())


def _total(figures: list[int | None]) -> int | None:
    """The sum, or None when any photo did not count it (or no photo was analysed)."""
    if not figures or any(f is None for f in figures):
        return None
    return sum(f for f in figures if f is not None)


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
    """The photos (by index) of one scene grouped: any two that `same_scene` finds join their
    groups (single linkage), each group naming its best shot; groups in the order of their first
    index. Near-linear in the photos: `same_scene` is asked only of the pairs that could pass it,
    found by `_near_pairs` and `_burst_pairs` (tests/utils/albums.py keeps the all-pairs grouping
    these must equal)."""
    hashes = {i: int(a.image.phash, 16) for i, a in photos.items() if a.image.phash is not None}
    parent = {i: i for i in photos}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving keeps the trees flat
            i = parent[i]
        return i

    def join(pairs: Iterator[tuple[int, int]]) -> None:
        for i, j in pairs:
            first, second = root(i), root(j)
            if first != second and same_scene(photos[i], photos[j]):
                parent[max(first, second)] = min(first, second)

    timed = {i: t for i in hashes if (t := _taken_at(photos[i])) is not None}
    join(_near_pairs(hashes))
    join(_burst_pairs(hashes, timed))
    members: dict[int, list[int]] = defaultdict(list)
    for i in sorted(photos):
        members[root(i)].append(i)
    return [
        AlbumGroup(images=group, best=best_shot({i: photos[i] for i in group}))
        for group in members.values()
        if len(group) > 1
    ]


# Multi-index hashing (Norouzi et al.): the 64 bits in _BANDS fields of _BAND_BITS. Two hashes at
# most NEAR_BITS apart differ by at most NEAR_BITS // _BANDS bits in one field at least
# (pigeonhole), so each photo looks up only the fields within that many bits of its own, in an
# index of the photos before it: 4 x 137 lookups a photo, and with 16-bit fields a lookup finds
# about n / 65,536 photos that are not near (none at 10,000 photos, n in all at 65,536).
_BANDS = 4
_BAND_BITS = 64 // _BANDS
_BAND_MASK = (1 << _BAND_BITS) - 1


def _flips(width: int, radius: int) -> list[int]:
    """Every value of `width` bits with at most `radius` bits set: the XOR masks that reach a
    field's neighbours within `radius`."""
    return [
        sum(1 << bit for bit in bits)
        for count in range(radius + 1)
        for bits in itertools.combinations(range(width), count)
    ]


_NEAR_FLIPS = _flips(_BAND_BITS, NEAR_BITS // _BANDS)


def _near_pairs(hashes: dict[int, int]) -> Iterator[tuple[int, int]]:
    """Every pair of photos whose hashes are within NEAR_BITS (and a few others that share a
    field within reach), each once."""
    index: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(_BANDS)]
    for i, value in hashes.items():
        found: set[int] = set()
        for band, fields in enumerate(index):
            field = (value >> (band * _BAND_BITS)) & _BAND_MASK
            for flip in _NEAR_FLIPS:
                if (near := fields.get(field ^ flip)) is not None:
                    found.update(near)
            fields[field].append(i)
        for j in found:
            if (value ^ hashes[j]).bit_count() <= NEAR_BITS:
                yield j, i


_BYTE_BITS = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.uint8)


def _burst_pairs(
    hashes: dict[int, int], timed: dict[int, dt.datetime]
) -> Iterator[tuple[int, int]]:
    """Every pair of photos taken within BURST_SECONDS of each other whose hashes are within
    BURST_BITS, each once: a sweep over the photos in time order, each compared with those taken
    in the seconds before it. (A field index would not help: BURST_BITS is a quarter of the bits.)
    Its work is the photos times a burst's length; a library whose photos all say the same second
    costs all pairs of them, in numpy (10,000 photos: BENCHMARKS.md)."""
    order = sorted(timed, key=timed.__getitem__)
    values = np.array([hashes[i] for i in order], dtype=np.uint64)
    first = 0
    for last, i in enumerate(order):
        while (timed[i] - timed[order[first]]).total_seconds() > BURST_SECONDS:
            first += 1
        apart = _BYTE_BITS[(values[first:last] ^ values[last]).view(np.uint8)]
        for j in np.flatnonzero(apart.reshape(-1, 8).sum(axis=1) <= BURST_BITS):
            yield order[first + int(j)], i


def album_of(
    analyses: list[Analysis],
    failed: int,
    max_labels: int,
    groups: list[AlbumGroup] | None = None,
) -> Album:
    groups = groups or []
    objects: Counter[str] | None = Counter() if analyses else None
    scores: dict[str, list[float]] = defaultdict(list)
    for analysis in analyses:
        if analysis.summary.objects is None or objects is None:
            objects = None
        else:
            objects.update(analysis.summary.objects)
        for found in analysis.results.resnet50 or []:
            scores[found.label].append(found.confidence)
    ranked = sorted(scores.items(), key=lambda item: (-len(item[1]), -sum(item[1])))
    return Album(
        images=len(analyses) + failed,
        analysed=len(analyses),
        failed=failed,
        people=_total([a.summary.people for a in analyses]),
        faces=_total([a.summary.faces for a in analyses]),
        people_with_face=_total([a.summary.people_with_face for a in analyses]),
        objects=None if objects is None else dict(objects),
        labels=None
        if not analyses or any(a.summary.labels is None for a in analyses)
        else [
            AlbumLabel(label=label, images=len(found), confidence=sum(found) / len(found))
            for label, found in ranked[:max_labels]
        ],
        scenes=len(analyses) - sum(len(group.images) - 1 for group in groups),
        groups=groups,
    )


async def _one(index: int, request: AnalysisRequest, services: Services, owner: str) -> BatchItem:
    """One photo in hand analysed, on an analysis slot its caller holds."""
    try:
        analysed = await analyze_keeping_photo(request, services, owner)
        return BatchItem(index=index, analysis=analysed.analysis)
    except PicmetricError as exc:
        return _failed(index, request, exc)
    except Exception:  # a bug must not take the other photos down with it
        source = tenancy.stored_source(request.source_kind, request.source)
        log.exception("Batch photo %d (%s) failed unexpectedly", index, source)
        return _failed(index, request, PicmetricError(UNEXPECTED))


def _failed(index: int, request: AnalysisRequest, exc: PicmetricError) -> BatchItem:
    """A photo's error, in /v1's error shape and counted as a request's error is (gateway.main
    renders those; a batch answers 200 with its photos' errors inside)."""
    if exc.errortype != "internal_error":
        source = tenancy.stored_source(request.source_kind, request.source)
        log.info("Batch photo %d (%s) failed: %s %s", index, source, exc.errortype, exc)
    metrics.ERRORS.labels(exc.errortype).inc()
    return BatchItem(index=index, error=ErrorBody(errortype=exc.errortype, message=str(exc)))


class _BatchRun:
    """A batch's photos through two stages. Fetching: as the owner's fetches
    (PICMETRIC_MAX_FETCHES_PER_KEY), the batch's first at once (429 too_many_fetches when the key
    has none free) and more while free, each carrying the batch's next URL; at most that many of
    its photos are fetched and not yet analysed, so the bytes it holds are bounded too.
    Analysing: a photo takes an analysis slot only once its bytes are in hand, and while the batch
    holds a slot its photos in hand queue for it; one in hand when the batch holds none and none
    is free fails alone with 503 overloaded, and a batch none of whose photos got a slot is
    answered 503 overloaded. No slot is held while a photo is fetched."""

    def __init__(
        self,
        requests: dict[int, AnalysisRequest],
        services: Services,
        owner: str,
        group: asyncio.TaskGroup,
    ) -> None:
        self.photos = requests
        self.services = services
        self.owner = owner
        self.group = group
        self.to_fetch = deque(i for i, r in requests.items() if r.data is None)
        self.in_hand = deque(i for i, r in requests.items() if r.data is not None)
        self.items: dict[int, BatchItem] = {}
        self.analysing = 0  # the batch's photos holding an analysis slot
        self.had_slot = False
        self.refused = False
        self.room = asyncio.Semaphore(services.fetches.per_key)  # fetched, not yet analysed
        self.holding_room: set[int] = set()
        # One trace per photo (its fetch and its analysis), linked to the batch's.
        self.spans = {
            i: tracing.linked_root("photo", {"picmetric.batch_index": i}) for i in requests
        }

    def start(self, first_fetch: ExitStack) -> None:
        """Fetching on `first_fetch` (one of the owner's fetches, when there are URLs), and the
        photos in hand onto slots."""
        if self.to_fetch:
            self._start_fetching(self.to_fetch.popleft(), first_fetch)
        self._start_analysing()

    def _start_fetching(self, index: int, permit: ExitStack | None = None) -> None:
        """A fetcher on `permit` or one of the owner's fetches taken now, given back when the
        fetcher ends, even if it was cancelled before it ran."""
        if permit is None:
            permit = ExitStack()
            permit.enter_context(self.services.fetches.admit(self.owner))
        self.group.create_task(self._fetcher(index, permit)).add_done_callback(
            lambda _: permit.close()
        )

    async def _fetcher(self, index: int, permit: ExitStack) -> None:
        """URLs one after another on one of the owner's fetches; more fetchers while free."""
        with permit:
            while True:
                while self.to_fetch and self.services.fetches.has_room(self.owner):
                    self._start_fetching(self.to_fetch.popleft())
                await self.room.acquire()
                self.holding_room.add(index)
                request = self.photos[index]
                try:
                    with tracing.use(self.spans[index]):
                        self.photos[index] = await fetched(request, self.services, self.owner)
                except Exception as exc:  # this photo fails alone
                    self._done(index, _fetch_failed(index, request, exc))
                else:
                    self.in_hand.append(index)
                    self._start_analysing()
                if not self.to_fetch:
                    return
                index = self.to_fetch.popleft()

    def _start_analysing(self) -> None:
        """Photos in hand onto free slots; those left fail overloaded when the batch holds no
        slot they could queue for."""
        while self.in_hand and self.services.admission.has_room():
            slot = ExitStack()
            slot.enter_context(self.services.admission.admit())
            self.analysing += 1
            self.had_slot = True
            slot.callback(self._slot_given_back)
            task = self.group.create_task(self._analyser(self.in_hand.popleft(), slot))
            task.add_done_callback(lambda _, slot=slot: slot.close())  # type: ignore[misc]
        while self.in_hand and not self.analysing:
            index = self.in_hand.popleft()
            self.refused = True
            self._done(index, _failed(index, self.photos[index], Overloaded(_NO_SLOT)))

    def _slot_given_back(self) -> None:
        self.analysing -= 1

    async def _analyser(self, index: int, slot: ExitStack) -> None:
        """Photos in hand one after another on one slot."""
        with slot:
            while True:
                with tracing.use(self.spans[index]):
                    item = await _one(index, self.photos[index], self.services, self.owner)
                self._done(index, item)
                if not self.in_hand:
                    return
                index = self.in_hand.popleft()

    def _done(self, index: int, item: BatchItem) -> None:
        self.items[index] = item
        self.spans[index].end()
        if index in self.holding_room:
            self.holding_room.remove(index)
            self.room.release()


_NO_SLOT = (
    "The gateway was already running as many analyses as it may "
    "(PICMETRIC_MAX_ANALYSES_IN_FLIGHT) when this photo arrived; retry in a few seconds."
)


def _fetch_failed(index: int, request: AnalysisRequest, exc: Exception) -> BatchItem:
    if isinstance(exc, PicmetricError):
        return _failed(index, request, exc)
    source = tenancy.stored_source(request.source_kind, request.source)
    log.error("Batch photo %d (%s) failed unexpectedly", index, source, exc_info=exc)
    return _failed(index, request, PicmetricError(UNEXPECTED))


async def analyze_album(
    requests: list[AnalysisRequest], services: Services, owner: str
) -> BatchAnswer:
    """The photos analysed together (their tensors share Triton's dynamic batches), answered in
    the order sent, one entry per photo sent. Fetches and analysis slots as `_BatchRun` says.
    One URL sent twice, in any spelling of it (gateway.intake.fetch.fetch_identity), is fetched and
    analysed once: each of its entries answers that analysis (whose source is the first
    spelling's)."""
    first_of: dict[str, int] = {}
    for index, request in enumerate(requests):
        if request.data is None:  # uploads are each their own
            first_of.setdefault(fetch_identity(request.source), index)
    same_as = [
        i if r.data is not None else first_of[fetch_identity(r.source)]
        for i, r in enumerate(requests)
    ]
    unique = {i: r for i, r in enumerate(requests) if same_as[i] == i}
    with ExitStack() as first_fetch:
        if any(r.data is None for r in unique.values()):
            first_fetch.enter_context(services.fetches.admit(owner))  # or 429 too_many_fetches
        async with asyncio.TaskGroup() as group:
            run = _BatchRun(unique, services, owner, group)
            run.start(first_fetch)
    if run.refused and not run.had_slot:
        raise Overloaded(_NO_SLOT)
    ordered = [run.items[same_as[i]].model_copy(update={"index": i}) for i in range(len(requests))]
    analysed = {item.index: item.analysis for item in ordered if item.analysis is not None}
    analyses = list(analysed.values())
    max_labels = max((r.options.max_results for r in requests), default=0)
    failed = len(ordered) - len(analyses)
    album = album_of(analyses, failed, max_labels, groups_of(analysed))
    return BatchAnswer(results=ordered, album=album, warnings=batch_warnings(analyses))
