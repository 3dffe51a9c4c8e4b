"""One analysis from start to end: fetch, then with an analysis slot: keep an upload, cache
lookup, decode, inference, store. What it is asked comes in as a `gateway.pipeline.request`;
the row it stores and the answer it returns are made, in one step, by
`gateway.pipeline.answers`."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, contextmanager
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from core.models import OFFERED_MODELS
from gateway import metrics, tenancy, tracing
from gateway.errors import StorageError, UnsupportedImage
from gateway.images import privacy, quality
from gateway.images.decode import DecodedImage, DecodePlan, decode_planned, plan_decode
from gateway.intake import local_uploads
from gateway.intake import s3 as s3_objects
from gateway.intake.fetch import fetch
from gateway.pipeline.answers import Inferred, answered
from gateway.pipeline.request import NO_UPLOAD_PLACE, AnalysisRequest
from gateway.results import DEFAULT_MIN_FACE_SIZE, Analysis, Options, Quality
from gateway.services import Services
from gateway.store.storage import AnalysisRow, AnalysisStore
from gateway.triton import face_size
from gateway.triton.catalog import ModelState
from gateway.triton.inference import Call, ModelSpec, decode_side, input_memory, run_models

log = logging.getLogger(__name__)


@contextmanager
def _stage(
    name: str,
    timings: dict[str, float],
    exemplar: Callable[[], dict[str, str] | None] = tracing.exemplar,
) -> Iterator[None]:
    """The block timed as stage `name`: in `timings`, the stage metric and a span of the trace.
    `exemplar`: the metric's, when the stage has ended (an analysis's stages: `_Run.exemplar`)."""
    started = time.perf_counter()
    with tracing.span(name):
        yield
    seconds = time.perf_counter() - started
    timings[name] = round(seconds * 1000, 2)
    metrics.STAGE_SECONDS.labels(name).observe(seconds, exemplar())


def full_photo(data: bytes, decoded: DecodedImage | None, services: Services) -> DecodedImage:
    """The photo at full resolution: `decoded` (an analysis's) when it is, else decoded now and
    counted as a decode stage."""
    if decoded is not None and decoded.full_resolution:
        return decoded
    settings = services.settings
    with _stage("decode", {}):
        plan = plan_decode(
            data, settings.max_image_pixels, settings.max_jpeg_scans, None, settings.max_image_side
        )
        return decode_planned(data, plan)


async def plan_photo(data: bytes, services: Services, min_side: int | None = None) -> DecodePlan:
    """The photo's decode, checked against the per-photo limits from its header (in a worker
    thread: the JPEG scan count reads the whole file)."""
    settings = services.settings
    return await run_in_threadpool(
        plan_decode,
        data,
        settings.max_image_pixels,
        settings.max_jpeg_scans,
        min_side,
        settings.max_image_side,
    )


def decode_min_side(specs: list[ModelSpec], call: Call) -> int | None:
    """The shortest side an analysis with these models needs from the decoder (None: every
    pixel): the models' (`inference.decode_side`), and quality.WORKING_SIDE px at least for the
    quality figures."""
    side = decode_side(specs, call)
    return None if side is None else max(side, quality.WORKING_SIDE)


def analysis_memory(
    plan: DecodePlan, specs: list[ModelSpec], input_sizes: Mapping[str, int]
) -> int:
    """Peak bytes one analysis of the photo `plan` decodes holds, from its header: the decode's
    peak (`DecodePlan.memory`), or, once decoded, the photo with the quality figures' buffers
    (`quality.memory`) and every model's input in flight (`inference.input_memory`) beside it,
    whichever is more."""
    return _memory(plan, input_memory(specs, input_sizes))


def _memory(plan: DecodePlan, inputs: tuple[int, int]) -> int:
    """`analysis_memory`, the models' `input_memory` in hand."""
    peak, (height, width), pixels = plan.memory, plan.output_size, plan.output_bytes
    fixed, per_pixel = inputs
    decoded = pixels + quality.memory(height, width) + fixed + per_pixel * height * width
    return max(peak, decoded)


def photo_memory(
    services: Services, plan: DecodePlan, nbytes: int
) -> AbstractAsyncContextManager[None]:
    """Hold `nbytes` of the process's decode memory budget for the photo `plan` decodes."""
    header = plan.header
    what = f"this {header.width}x{header.height} {header.format}"
    return services.decode_memory.reserve(nbytes, what)


def _cache_key(specs: list[ModelSpec], states: Mapping[str, ModelState], options: Options) -> str:
    """Same bytes + same models (version and converted weights) + same options = same answer."""
    parts = {
        "models": [[s.name, states[s.name].version, states[s.name].cache_key] for s in specs],
        "threshold": options.threshold,
        "max_results": options.max_results,
    }
    if options.min_face_size != DEFAULT_MIN_FACE_SIZE:  # keys of rows stored before it stand
        parts["min_face_size"] = options.min_face_size
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


async def fetch_image(request: AnalysisRequest, services: Services, owner: str) -> AnalysisRequest:
    """The request with its photo's bytes in hand: uploaded, or fetched from its URL as one of
    `owner`'s fetches (PICMETRIC_MAX_FETCHES_PER_KEY at once, 429 past it). A fetch waits on
    another server, so it holds no analysis slot."""
    if request.data is not None:
        return request
    # Nothing is fetched for a request the models cannot answer now: 503 model_unavailable first.
    await services.catalog.specs_for(services.triton, request.models)
    with services.fetches.admit(owner):
        return await fetched(request, services, owner)


async def fetched(request: AnalysisRequest, services: Services, owner: str) -> AnalysisRequest:
    """`fetch_image` of a URL, for a caller that holds one of `owner`'s fetches (a batch)."""
    timings: dict[str, float] = {}
    with _stage("fetch", timings):
        image = await fetch(services.http, services.s3, request.source, services.settings, owner)
    return dataclasses.replace(request, data=image.data, fetch_ms=timings["fetch"])


async def analyze(
    request: AnalysisRequest, services: Services, owner: str, priority: int = 0
) -> Analysis:
    """The analysis of one image for `owner` (gateway.tenancy); stored, or answered from the
    store when cached. Its analysis slot is taken once its bytes are in hand (503 overloaded
    when none is free). `priority`: Triton's request priority of its inference
    (`inference.run_models`: 0 the default, a bulk job's 2)."""
    request = await fetch_image(request, services, owner)
    with services.admission.admit():
        return (await analyze_keeping_photo(request, services, owner, priority=priority)).analysis


@dataclass(frozen=True)
class Analysed:
    """An analysis, and its photo as decoded for the models (None when the store answered)."""

    analysis: Analysis
    photo: DecodedImage | None


async def analyze_keeping_photo(
    request: AnalysisRequest,
    services: Services,
    owner: str,
    memory_held: bool = False,
    full_resolution: bool = False,
    priority: int = 0,
) -> Analysed:
    """`analyze` of a photo in hand (`fetch_image`) whose analysis slot the caller holds, with
    the photo as it was decoded, for a caller that needs its pixels too: a photo is decoded once
    per analysis. `memory_held`: the caller already holds the photo's share of the decode memory
    budget (for longer); `full_resolution`: the caller needs every pixel, so no reduced decode;
    `priority`: as `analyze`'s.
    The answer carries the trace's id when the analysis is traced (gateway.tracing)."""
    with tracing.span("analysis", {"picmetric.source_kind": request.source_kind}):
        trace_id = tracing.trace_id()  # every stage's span is in this trace
        run = _Run(memory_held, full_resolution, priority, trace_id)
        analysed = await _analysed(request, services, owner, run)
    if trace_id is None:
        return analysed
    analysis = analysed.analysis.model_copy(update={"trace_id": trace_id})
    return dataclasses.replace(analysed, analysis=analysis)


@dataclass(frozen=True)
class _Run:
    """How `analyze_keeping_photo` was asked to run, and the trace it runs in."""

    memory_held: bool
    full_resolution: bool
    priority: int
    trace_id: str | None

    def exemplar(self) -> dict[str, str] | None:
        """A latency observation's exemplar in this analysis (`tracing.exemplar` in its span)."""
        return None if self.trace_id is None else {"trace_id": self.trace_id}


def photo_bytes(request: AnalysisRequest) -> bytes:
    """The request's photo, in hand (`fetch_image`)."""
    if request.data is None:
        raise RuntimeError(f"{request.source_kind} photo not fetched yet: call fetch_image first")
    return request.data


async def _analysed(
    request: AnalysisRequest, services: Services, owner: str, run: _Run
) -> Analysed:
    """The steps, in order: the models asked, the upload kept, the store asked, then (`_infer`)
    the decode, the models beside the quality figures; the answer and its row made, the row
    stored."""
    data = photo_bytes(request)
    # `total` counts from the start of the fetch, as the client waited.
    started = time.perf_counter() - request.fetch_ms / 1000
    specs = await services.catalog.specs_for(services.triton, request.models)
    metrics.FETCHED_BYTES.labels(request.source_kind).inc(len(data))
    if request.keep != "no":
        request = await _kept(request, data, services, owner)
    sha256 = hashlib.sha256(data).hexdigest()
    key = _cache_key(specs, services.catalog.states, request.options)
    found: Inferred | AnalysisRow | None = None
    if not request.fresh:
        source = tenancy.stored_source(request.source_kind, request.source)
        found = await _from_store(services.store, sha256, key, owner, source)
    if found is None:
        found = await _infer(data, specs, request.options, services, run)
    states, skipped = services.catalog.states, skipped_models(request, specs)
    row, analysis = answered(request, owner, sha256, key, found, states, skipped, started)
    if row is not None:
        with _stage("store", {}, run.exemplar):
            await services.store.save(row)
    return Analysed(analysis, found.photo if isinstance(found, Inferred) else None)


def skipped_models(request: AnalysisRequest, specs: list[ModelSpec]) -> list[str]:
    """The models offered that did not run although the request asked for every model."""
    if request.models is not None:
        return []
    ran = {spec.name for spec in specs}
    return [name for name in OFFERED_MODELS if name not in ran]


async def _kept(
    request: AnalysisRequest, data: bytes, services: Services, owner: str
) -> AnalysisRequest:
    """`request` with its upload kept under `owner`'s own place, its pointer as the source: in the
    S3 bucket (`uploads/<owner>/`, an s3:// pointer), else, for /v1/images, in the upload folder
    (an upload:// pointer, gateway.intake.local_uploads). Kept only once its header was accepted
    (a photo the analysis refuses is not kept), and without its location and identifying
    metadata (gateway.images.privacy) unless PICMETRIC_KEEP_UPLOAD_METADATA. The analysis reads
    `data` as sent: its header says whether it carried a location. An upload that privacy cannot
    keep is refused (415) where it must be kept, otherwise analysed and not kept."""
    settings = services.settings
    bucket, folder = settings.s3_bucket, settings.upload_dir
    if not bucket and (folder is None or request.keep != "required"):
        if request.keep == "required":
            raise StorageError(NO_UPLOAD_PLACE)
        return request
    # the header's checks; 413 or 415 and nothing kept
    header = (await plan_photo(data, services)).header
    kept = data
    if not settings.keep_upload_metadata:
        try:
            kept = await run_in_threadpool(privacy.strip_identifying, data, header)
        except UnsupportedImage as exc:
            if request.keep == "required":
                raise
            log.info("Upload %r is analysed, not kept: %s", request.source, exc)
            return request
    if bucket:
        pointer = await s3_objects.keep_upload(services.s3, bucket, owner, kept)
    else:
        assert folder is not None
        pointer = await local_uploads.keep(folder, owner, kept)
    return dataclasses.replace(request, source=pointer)


async def _from_store(
    store: AnalysisStore, sha256: str, key: str, owner: str, source: str
) -> AnalysisRow | None:
    """The stored analysis that answers a request (`answers.answered`): the owner's of the same
    bytes (`sha256`) with the same models and options (`key`), of the same `source` if there is
    one. Another owner's analysis never answers (AnalysisStore.find_cached): a key's first
    analysis of a photo runs the models, so neither `cached` nor the time taken tells it that
    another key analysed the photo. None: nothing stored answers it."""
    cached = await store.find_cached(sha256, key, owner, source)
    if cached is not None:
        metrics.CACHE_HITS.inc()
    return cached


async def _infer(
    data: bytes,
    specs: list[ModelSpec],
    options: Options,
    services: Services,
    run: _Run,
) -> Inferred:
    """Decode the photo (as small as the models and the quality figures allow, unless
    `full_resolution`), then run the models and measure its quality side by side. What the
    decode, the quality figures and the models' inputs hold (`analysis_memory`) is reserved in
    the decode memory budget, before decoding, until the models have answered. MTCNN's face size
    is made pixels for the photo once decoded (`face_size.for_photo`)."""
    call = services.call()
    # What the decode needs of the models, and what their inputs will hold, asked at once.
    min_side = None if run.full_resolution else decode_min_side(specs, call)
    inputs = input_memory(specs, call.input_sizes, shared=call.shared is not None)
    plan = await plan_photo(data, services, min_side)
    timings: dict[str, float] = {}
    async with AsyncExitStack() as held:
        if not run.memory_held:
            nbytes = _memory(plan, inputs)
            await held.enter_async_context(photo_memory(services, plan, nbytes))
        with _stage("decode", timings, run.exemplar):
            # OpenCV releases the GIL: decoding in a worker thread keeps the event loop serving.
            photo = await run_in_threadpool(decode_planned, data, plan)
        if any(spec.name == "mtcnn" for spec in specs):  # 422 for a face size it cannot run
            options = face_size.for_photo(options, photo.height, photo.width)
        measuring = asyncio.create_task(_measure(photo, timings, run))
        try:
            found, preprocess = await run_models(specs, call, photo, options, run.priority)
        except BaseException:
            # Its thread reads the pixels: it ends while their memory is still held.
            await asyncio.wait([measuring])
            raise
        figures, phash = await measuring
    timings["preprocess"] = round(preprocess * 1000, 2)
    metrics.STAGE_SECONDS.labels("preprocess").observe(preprocess)
    for name, result in found.items():
        metrics.INFERENCE_SECONDS.labels(name).observe(result.seconds, run.exemplar())
    return Inferred(photo, plan.header, found, figures, phash, timings, options)


async def _measure(
    decoded: DecodedImage, timings: dict[str, float], run: _Run
) -> tuple[Quality, str]:
    """The photo's quality figures and perceptual hash, in a worker thread (OpenCV releases the
    GIL), while the models run."""
    with _stage("quality", timings, run.exemplar):
        return await run_in_threadpool(quality.measure, decoded.rgb)
