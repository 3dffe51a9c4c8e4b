"""One analysis from start to end: fetch, cache lookup, decode, inference, store."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway import metrics
from gateway.decode import decode_rgb
from gateway.fetch import FetchedImage, fetch
from gateway.formatting import summarize
from gateway.inference import ModelSpec, Options, decode_side, run_models
from gateway.services import Services
from gateway.storage import AnalysisRow, new_id


@dataclass(frozen=True)
class AnalysisRequest:
    source_kind: str  # "url", "s3" or "upload"
    source: str  # the URL, or the s3:// pointer of the stored upload
    models: list[str] | None  # None: every model that is ready
    threshold: float
    max_results: int
    data: bytes | None = None  # the uploaded bytes


@contextmanager
def _stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    timings[name] = round(seconds * 1000, 2)
    metrics.STAGE_SECONDS.labels(name).observe(seconds)


def _cache_key(specs: list[ModelSpec], services: Services, options: Options) -> str:
    """Same bytes + same models (version and converted weights) + same options = same answer."""
    states = services.catalog.states
    parts = {
        "models": [[s.name, states[s.name].version, states[s.name].cache_key] for s in specs],
        "threshold": options.threshold,
        "max_results": options.max_results,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


async def _fetch(request: AnalysisRequest, services: Services) -> FetchedImage:
    if request.data is not None:
        return FetchedImage(request.data, request.source)
    return await fetch(services.http, services.s3, request.source, services.settings)


async def analyze(request: AnalysisRequest, services: Services) -> dict[str, Any]:
    """The /v1 answer for one image; stored, or answered from the store when cached."""
    started = time.perf_counter()
    specs = await services.catalog.specs_for(services.triton, request.models)
    options = Options(request.threshold, request.max_results)
    timings: dict[str, float] = {}
    with _stage("fetch", timings):
        image = await _fetch(request, services)
    metrics.FETCHED_BYTES.labels(request.source_kind).inc(len(image.data))
    sha256 = hashlib.sha256(image.data).hexdigest()
    key = _cache_key(specs, services, options)
    cached = await services.store.find_cached(sha256, key)
    if cached is not None:
        metrics.CACHE_HITS.inc()
        return response(cached, cached=True)
    call = services.call()
    with _stage("decode", timings):
        # OpenCV releases the GIL: decoding in a worker thread keeps the event loop serving.
        decoded = await run_in_threadpool(
            decode_rgb, image.data, services.settings.max_image_pixels, decode_side(specs, call)
        )
    results, preprocess = await run_models(specs, call, decoded, options)
    timings["preprocess"] = round(preprocess * 1000, 2)
    metrics.STAGE_SECONDS.labels("preprocess").observe(preprocess)
    for name, result in results.items():
        metrics.INFERENCE_SECONDS.labels(name).observe(result.seconds)
    states = services.catalog.states
    detections = {name: result.detections for name, result in results.items()}
    row = AnalysisRow(
        id=new_id(),
        created_at=dt.datetime.now(dt.timezone.utc),
        source_kind=request.source_kind,
        source=request.source,
        image_sha256=sha256,
        cache_key=key,
        width=decoded.width,
        height=decoded.height,
        models={
            name: {
                "version": states[name].version,
                "weights": states[name].weights,
                "latency_ms": round(result.seconds * 1000, 2),
            }
            for name, result in results.items()
        },
        result={
            "results": detections,
            "options": {"threshold": options.threshold, "max_results": options.max_results},
        },
        timings=timings,
    )
    with _stage("store", timings):
        await services.store.save(row)
    row.timings = {**timings, "total": round((time.perf_counter() - started) * 1000, 2)}
    return response(row, cached=False)


def _utc(moment: dt.datetime) -> dt.datetime:
    """SQLite drops the zone; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def response(row: AnalysisRow, cached: bool) -> dict[str, Any]:
    """The /v1 JSON of a stored analysis."""
    results = row.result["results"]
    return {
        "id": row.id,
        "cached": cached,
        "created_at": _utc(row.created_at).isoformat(),
        "source": {"kind": row.source_kind, "url": row.source},
        "image": {"width": row.width, "height": row.height, "sha256": row.image_sha256},
        "options": row.result["options"],
        "models": [{"name": name, **info} for name, info in row.models.items()],
        "results": results,
        "summary": summarize(results),
        "timings_ms": row.timings,
    }
