"""An analysis as stored and as answered: the results-database row of a request, filled with what
the models and the quality measure made of its photo (or copied from an earlier analysis of the
same bytes), and the typed answer (gateway.results.Analysis) read from a row, fresh or stored."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gateway import tenancy
from gateway.images.decode import DecodedImage, ImageHeader
from gateway.pipeline.request import AnalysisRequest
from gateway.results import (
    Analysis,
    AnswerWarning,
    ImageInfo,
    ModelRun,
    Options,
    Quality,
    Results,
    Source,
    Summary,
    new_id,
    weights_warnings,
)
from gateway.store.storage import AnalysisRow
from gateway.triton.catalog import ModelState
from gateway.triton.inference import ModelResult


@dataclass(frozen=True)
class Inferred:
    """What the models and the quality measure made of a decoded photo."""

    photo: DecodedImage
    header: ImageHeader
    found: dict[str, ModelResult]
    figures: Quality
    phash: str
    timings: dict[str, float]  # of decode, quality and preprocess
    options: Options  # the request's, MTCNN's face size in pixels for this photo


def answered(
    request: AnalysisRequest,
    owner: str,
    sha256: str,
    key: str,
    found: Inferred | AnalysisRow,
    states: Mapping[str, ModelState],
    skipped: list[str],
    started: float,
) -> tuple[AnalysisRow | None, Analysis]:
    """The answer to `request` for `owner`, and the row to store for it (None: the answer is a
    stored row). `found`: what the models made of the photo (`sha256` its bytes), or the stored
    analysis of the same bytes, models (`key`: `cache_key`) and options that answers it: the
    owner's own of the same source is the answer as it is; one from another source is copied
    into a new analysis of this source. `started`: when the client began to wait
    (time.perf_counter()); the answer's `total` runs until now, just before the row is written,
    so that reading it later answers what the request answered (a row cannot hold how long its
    own write took)."""
    source = tenancy.stored_source(request.source_kind, request.source)
    if isinstance(found, AnalysisRow) and found.source == source:
        return None, stored_analysis(found, cached=True)
    row = AnalysisRow(
        id=new_id(),
        created_at=dt.datetime.now(dt.UTC),
        owner=owner,
        source_kind=request.source_kind,
        source=source,
        image_sha256=sha256,
        cache_key=key,
        timings={"fetch": request.fetch_ms},
    )
    if isinstance(found, AnalysisRow):
        row.width, row.height = found.width, found.height
        row.models, row.result = found.models, found.result
    else:
        _fill(row, found, states, skipped)
    total = round((time.perf_counter() - started) * 1000, 2)
    row.timings = {**row.timings, "total": total}
    return row, stored_analysis(row, cached=isinstance(found, AnalysisRow))


def _fill(
    row: AnalysisRow,
    inferred: Inferred,
    states: Mapping[str, ModelState],
    skipped: list[str],
) -> None:
    """`row` with what was inferred: the photo's size as shown, each model's run, the results,
    the options, what the photo says of itself and the warnings of this run (`skipped`: the
    models not run although every model was asked for; a reduced decode). Random weights are
    read from the models' runs when the row is answered, so they are not stored twice."""
    header = inferred.header
    photo = inferred.photo
    row.timings.update(inferred.timings)
    row.width, row.height = photo.width, photo.height
    row.models = _model_runs(inferred.found, states)
    warnings = [AnswerWarning.model_skipped(skipped)] if skipped else []
    if not photo.full_resolution:
        scale = photo.rgb.shape[1] / photo.width
        warnings.append(AnswerWarning.photo_reduced(photo.width, photo.height, scale))
    row.result = {
        "warnings": [warning.model_dump() for warning in warnings],
        "results": _results(inferred.found).model_dump(mode="json", exclude_none=True),
        "options": inferred.options.model_dump(),
        "photo": {
            "has_location": header.has_location,
            "taken_at": header.taken_at,
            "phash": inferred.phash,
            "quality": inferred.figures.model_dump(),
        },
    }


def _results(found: dict[str, ModelResult]) -> Results:
    results = Results.model_validate({name: result.detections for name, result in found.items()})
    return results.with_faces_linked()


def _model_runs(
    found: dict[str, ModelResult], states: Mapping[str, ModelState]
) -> dict[str, dict[str, object]]:
    """Per model: the Triton version, the weights it runs on and its latency, as stored."""
    return {
        name: {
            "version": states[name].version,
            "weights": states[name].weights,
            "latency_ms": round(result.seconds * 1000, 2),
        }
        for name, result in found.items()
    }


def _utc(moment: dt.datetime) -> dt.datetime:
    """SQLite drops the zone; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def stored_analysis(row: AnalysisRow, cached: bool) -> Analysis:
    """The typed analysis of a stored row."""
    results = Results.model_validate(row.result["results"])
    photo = dict(row.result.get("photo", {}))  # rows stored before it have the defaults
    figures = photo.pop("quality", None)
    models = [ModelRun.model_validate({"name": name, **run}) for name, run in row.models.items()]
    stored = [AnswerWarning.model_validate(w) for w in row.result.get("warnings", [])]
    return Analysis(
        id=row.id,
        cached=cached,
        created_at=_utc(row.created_at).isoformat(),
        source=Source.model_validate({"kind": row.source_kind, "url": row.source}),
        image=ImageInfo(
            width=row.width,
            height=row.height,
            sha256=row.image_sha256,
            **photo,
        ),
        options=Options.model_validate(row.result["options"]),
        models=models,
        results=results,
        summary=Summary.of(results),
        quality=None if figures is None else Quality.model_validate(figures),
        timings_ms=row.timings,
        warnings=weights_warnings(models) + stored,
    )
