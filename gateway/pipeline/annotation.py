"""`/v1/annotate`: an analysis, stored as usual, answered as its photo with the detections drawn
on it (JPEG). The photo is decoded once, at full resolution, for the models and the drawing."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from gateway.images import drawing
from gateway.pipeline.analysis import (
    analysis_memory,
    analyze_keeping_photo,
    fetch_image,
    full_photo,
    photo_bytes,
    photo_memory,
    plan_photo,
)
from gateway.pipeline.request import AnalysisRequest
from gateway.results import AnswerWarning
from gateway.services import Services
from gateway.triton.inference import MODELS


@dataclass(frozen=True)
class AnnotatedPhoto:
    jpeg: bytes
    analysis_id: str
    cached: bool  # the store answered: no model ran
    warnings: list[AnswerWarning]


async def annotate(
    request: AnalysisRequest, services: Services, owner: str, blur_faces: bool
) -> AnnotatedPhoto:
    """The analysis of `request` for `owner` and its photo drawn; `blur_faces` blurs every face.
    The photo is fetched once, for the analysis and the drawing, before the analysis slot is
    taken; the slot is held until the JPEG is made."""
    request = await fetch_image(request, services, owner)
    data = photo_bytes(request)
    with services.admission.admit():
        # The full-size photo is held until the JPEG is made; this share of the decode memory
        # budget covers the analysis (of every model asked for), then the drawing beside the photo.
        plan = await plan_photo(data, services)
        specs = [MODELS[name] for name in request.models or MODELS if name in MODELS]
        nbytes = max(
            analysis_memory(plan, specs, services.input_sizes()),
            plan.output_bytes + drawing.memory(*plan.output_size),
        )
        async with photo_memory(services, plan, nbytes):
            analysed = await analyze_keeping_photo(
                request, services, owner, memory_held=True, full_resolution=True
            )

            def drawn() -> bytes:
                # decoded now if the store answered
                photo = full_photo(data, analysed.photo, services)
                analysis = analysed.analysis
                warned = analysis.warnings
                random = [m for w in warned if w.kind == "random_weights" for m in w.models]
                canvas = drawing.draw(photo.rgb, analysis.results, blur_faces, random)
                return drawing.jpeg(canvas)

            jpeg = await run_in_threadpool(drawn)
    analysis = analysed.analysis
    return AnnotatedPhoto(jpeg, analysis.id, analysis.cached, analysis.warnings)
