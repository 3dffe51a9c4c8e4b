"""The typed API: analyse by URL or upload, read stored analyses, list models."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from gateway import rendering
from gateway import s3 as s3_objects
from gateway.analysis import (
    AnalysisRequest,
    analyze,
    options_or_defaults,
    stored_analysis,
    url_kind,
)
from gateway.deps import ADMIT_ANALYSIS, ServicesDep, require_api_key
from gateway.errors import ImageTooLarge, InvalidRequest, NotFound, StorageError
from gateway.results import Analysis
from gateway.schemas import AnalysisOptions, AnalyzeRequest, ErrorBody, ModelInfo, multipart_schema
from gateway.services import Services

Body = TypeVar("Body", bound=BaseModel)

router = APIRouter(
    prefix="/v1",
    tags=["v1"],
    dependencies=[Depends(require_api_key)],
    responses={code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 415, 422, 503)},
)

# One route takes JSON or a multipart upload, which FastAPI cannot declare from the signature.
_JSON_OR_UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": AnalyzeRequest.model_json_schema()},
            "multipart/form-data": {"schema": multipart_schema()},
        },
    }
}
_UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": multipart_schema()}},
    }
}


def _validated(data: dict[str, Any], schema: type[Body]) -> Body:
    """Validate like FastAPI does for declared bodies, so errors read the same."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


def _request(body: AnalysisOptions, services: Services, **source: Any) -> AnalysisRequest:
    options = options_or_defaults(services.settings, body.threshold, body.max_results)
    return AnalysisRequest(
        models=list(body.models) if body.models else None, options=options, **source
    )


async def _read_upload(form: FormData, limit: int) -> tuple[bytes, str]:
    """The uploaded bytes and file name."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("Send the image as a multipart form field named 'file'.")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ImageTooLarge.over(limit)
    if not data:
        raise InvalidRequest("The uploaded file is empty.")
    return data, upload.filename or "upload"


async def _analyze_upload(request: Request, services: Services, keep: bool) -> Analysis:
    """Analyse a multipart upload; it is kept in S3 when a bucket is set (or `keep`)."""
    async with request.form(max_files=1, max_fields=10) as form:
        data, filename = await _read_upload(form, services.settings.max_image_bytes)
        fields: dict[str, Any] = {
            k: v for k, v in form.items() if k != "file" and isinstance(v, str) and v
        }
    if "models" in fields:
        fields["models"] = [m.strip() for m in fields["models"].split(",") if m.strip()]
    body = _validated(fields, AnalysisOptions)
    bucket = services.settings.s3_bucket
    if keep and not bucket:
        raise StorageError("Storing uploads needs an S3 bucket: set PICMETRIC_S3_BUCKET.")
    pointer = (
        await s3_objects.keep_upload(services.s3, bucket, data) if bucket else f"upload:{filename}"
    )
    return await analyze(
        _request(body, services, source_kind="upload", source=pointer, data=data), services
    )


@router.post(
    "/analyze",
    response_model=Analysis,
    openapi_extra=_JSON_OR_UPLOAD,
    dependencies=[ADMIT_ANALYSIS],
)
async def analyze_image(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Analyse an image given by `url` (JSON) or uploaded as multipart `file`."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return rendering.v1_analysis(await _analyze_upload(request, services, keep=False))
    try:
        payload = await request.json()
    except ValueError as exc:
        raise InvalidRequest(
            'Send JSON like {"url": "https://..."} or a multipart upload.'
        ) from exc
    body = _validated(payload if isinstance(payload, dict) else {}, AnalyzeRequest)
    analysis_request = _request(body, services, source_kind=url_kind(body.url), source=body.url)
    return rendering.v1_analysis(await analyze(analysis_request, services))


@router.post(
    "/images",
    response_model=Analysis,
    status_code=201,
    openapi_extra=_UPLOAD,
    dependencies=[ADMIT_ANALYSIS],
)
async def upload_image(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Store an uploaded image in the S3 bucket, then analyse it."""
    return rendering.v1_analysis(await _analyze_upload(request, services, keep=True))


@router.get("/analyses/{analysis_id}", response_model=Analysis)
async def read_analysis(analysis_id: str, services: ServicesDep) -> dict[str, Any]:
    """A stored analysis by id."""
    row = await services.store.get(analysis_id)
    if row is None:
        raise NotFound(f"No analysis with id '{analysis_id}'.")
    return rendering.v1_analysis(stored_analysis(row, cached=True))


@router.get("/models", response_model=list[ModelInfo])
async def read_models(services: ServicesDep) -> list[ModelInfo]:
    """The models, their Triton versions, readiness and weight provenance."""
    await services.catalog.refresh(services.triton)
    return [
        ModelInfo(
            name=state.name,
            triton_model=state.triton_model,
            ready=state.ready,
            version=state.version,
            weights=state.weights,
        )
        for state in services.catalog.states.values()
    ]
