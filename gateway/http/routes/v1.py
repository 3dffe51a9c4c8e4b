"""The typed API: analyse by URL or upload, draw the detections on the photo, analyse an album,
read stored analyses, list models."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from gateway.errors import ErrorBody, NotFound, error_statuses
from gateway.http import bodies, rendering
from gateway.http.deps import OwnerDep, ServicesDep, limit_rate, request_owner, require_api_key
from gateway.http.schemas import (
    AnalyzeRequest,
    BatchRequest,
    ModelInfo,
    multipart_schema,
)
from gateway.http.strict import known_query
from gateway.pipeline.album import BatchAnswer, analyze_album
from gateway.pipeline.analysis import analyze
from gateway.pipeline.annotation import annotate
from gateway.pipeline.answers import stored_analysis
from gateway.results import Analysis, AnswerWarning

router = APIRouter(
    prefix="/v1",
    tags=["v1"],
    # The owner (cached for the routes that take it) is known before the query is checked.
    dependencies=[
        Depends(require_api_key),
        Depends(limit_rate),
        Depends(request_owner),
        Depends(known_query),
    ],
    responses={code: {"model": ErrorBody} for code in error_statuses()},
)


# One route takes JSON or a multipart upload, which FastAPI cannot declare from the signature.
def _body(json_schema: dict[str, Any], form_schema: dict[str, Any] | None) -> dict[str, Any]:
    content = {"multipart/form-data": {"schema": form_schema}} if form_schema else {}
    if json_schema:
        content = {"application/json": {"schema": json_schema}, **content}
    return {"requestBody": {"required": True, "content": content}}


_JSON_OR_UPLOAD = _body(AnalyzeRequest.model_json_schema(), multipart_schema())
_UPLOAD = _body({}, multipart_schema())
_BATCH = _body(BatchRequest.model_json_schema(), multipart_schema(files=True))


@router.post(
    "/analyze",
    response_model=Analysis,
    openapi_extra=_JSON_OR_UPLOAD,
)
async def analyze_image(
    request: Request, response: Response, services: ServicesDep, owner: OwnerDep
) -> dict[str, Any]:
    """Analyse an image given by `url` (JSON) or uploaded as multipart `file`."""
    analysis_request = await bodies.analysis_request(request, services)
    return _answered(await analyze(analysis_request, services, owner), response)


def _answered(analysis: Analysis, response: Response) -> dict[str, Any]:
    """The analysis as JSON, its warnings' kinds also in a header."""
    response.headers.update(rendering.warnings_header(analysis.warnings))
    return rendering.v1_analysis(analysis)


@router.post(
    "/images",
    response_model=Analysis,
    status_code=201,
    openapi_extra=_UPLOAD,
)
async def upload_image(
    request: Request, response: Response, services: ServicesDep, owner: OwnerDep
) -> dict[str, Any]:
    """Keep an uploaded image in S3, without its location and identifying metadata; analyse it."""
    analysis_request = await bodies.upload_request(request, services, keep=True)
    return _answered(await analyze(analysis_request, services, owner), response)


@router.post(
    "/annotate",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "the annotated photo"}},
    openapi_extra=_JSON_OR_UPLOAD,
)
async def annotate_image(
    request: Request,
    services: ServicesDep,
    owner: OwnerDep,
    blur_faces: Annotated[bool, Query(description="blur every detected face")] = False,
) -> Response:
    """Analyse an image like /v1/analyze and answer the photo with the detections drawn on it
    (JPEG); the stored analysis's id is in `X-Analysis-Id`, whether the store answered it in
    `X-Analysis-Cached`."""
    analysis_request = await bodies.analysis_request(request, services)
    annotated = await annotate(analysis_request, services, owner, blur_faces)
    headers = {
        "X-Analysis-Id": annotated.analysis_id,
        "X-Analysis-Cached": "true" if annotated.cached else "false",
        **rendering.warnings_header(annotated.warnings),
    }
    return Response(annotated.jpeg, media_type="image/jpeg", headers=headers)


@router.post(
    "/batch",
    response_model=BatchAnswer,
    openapi_extra=_BATCH,
)
async def analyze_batch(
    request: Request, response: Response, services: ServicesDep, owner: OwnerDep
) -> dict[str, Any]:
    """Analyse up to PICMETRIC_MAX_BATCH_IMAGES images (JSON `urls` or several multipart
    `file`s): one result per image in order, each failing alone, and an album summary."""
    requests = await bodies.batch_requests(request, services)
    answer = await analyze_album(requests, services, owner)
    response.headers.update(rendering.warnings_header(answer.warnings))
    return answer.model_dump(mode="json")


@router.get("/analyses/{analysis_id}", response_model=Analysis)
async def read_analysis(
    analysis_id: str, response: Response, services: ServicesDep, owner: OwnerDep
) -> dict[str, Any]:
    """A stored analysis by id, made with the same API key."""
    row = await services.store.get(analysis_id, owner)
    if row is None:
        raise NotFound(f"No analysis with id '{analysis_id}'.")
    return _answered(stored_analysis(row, cached=True), response)


@router.get("/models", response_model=list[ModelInfo])
async def read_models(services: ServicesDep, response: Response) -> list[ModelInfo]:
    """The models, their Triton versions, readiness and weight provenance (`weights.kind`:
    `pretrained`, `file` or `random`; random weights also in `X-Picmetric-Warnings`)."""
    await services.catalog.refresh(services.triton)
    states = services.catalog.states.values()
    random = [state.name for state in states if state.weights.get("kind") == "random"]
    if random:
        response.headers.update(rendering.warnings_header([AnswerWarning.random_weights(random)]))
    return [
        ModelInfo(
            name=state.name,
            triton_model=state.triton_model,
            ready=state.ready,
            version=state.version,
            weights=state.weights,
        )
        for state in states
    ]
