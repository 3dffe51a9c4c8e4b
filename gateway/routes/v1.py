"""The typed API: analyse by URL or upload, read stored analyses, list models."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from gateway import urlguard
from gateway.analysis import AnalysisRequest, analyze, response
from gateway.deps import ServicesDep, require_api_key
from gateway.errors import ImageTooLarge, InvalidRequest, NotFound, StorageError, UpstreamError
from gateway.schemas import Analysis, AnalysisOptions, AnalyzeRequest, ErrorBody, ModelInfo
from gateway.services import Services

router = APIRouter(
    prefix="/v1",
    tags=["v1"],
    dependencies=[Depends(require_api_key)],
    responses={code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 415, 422, 503)},
)

_MULTIPART = {
    "schema": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "models": {"type": "string", "description": "comma-separated, e.g. resnet50,yolov3"},
            "threshold": {"type": "number"},
            "max_results": {"type": "integer"},
        },
    }
}
_BOTH_BODIES = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": AnalyzeRequest.model_json_schema()},
            "multipart/form-data": _MULTIPART,
        },
    }
}


def source_kind(url: str) -> str:
    return "s3" if urlguard.check_scheme(url) == "s3" else "url"


def _validated(data: dict[str, Any], schema: type[AnalysisOptions] = AnalyzeRequest) -> Any:
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidRequest(f"Invalid request: {problems}.") from exc


def _request(body: AnalysisOptions, services: Services, **source: Any) -> AnalysisRequest:
    settings = services.settings
    return AnalysisRequest(
        models=list(body.models) if body.models else None,
        threshold=settings.default_threshold if body.threshold is None else body.threshold,
        max_results=body.max_results or settings.default_max_results,
        **source,
    )


async def _read_upload(form: FormData, limit: int) -> tuple[bytes, str]:
    """The uploaded bytes and file name."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("Send the image as a multipart form field named 'file'.")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ImageTooLarge(f"Image is larger than the {limit} byte limit.")
    if not data:
        raise InvalidRequest("The uploaded file is empty.")
    return data, upload.filename or "upload"


async def _store_upload(data: bytes, services: Services) -> str:
    """Put the bytes into the uploads bucket under their sha256; returns the s3:// pointer."""
    bucket = services.settings.s3_bucket
    if not bucket:
        raise StorageError("Storing uploads needs an S3 bucket: set PICMETRIC_S3_BUCKET.")
    key = f"uploads/{hashlib.sha256(data).hexdigest()}"
    try:
        await run_in_threadpool(services.s3.put_object, Bucket=bucket, Key=key, Body=data)
    except Exception as exc:  # botocore raises many unrelated types; all mean "S3 failed"
        raise UpstreamError(f"Could not store the upload in s3://{bucket}: {exc}") from exc
    return f"s3://{bucket}/{key}"


async def _analyze_upload(request: Request, services: Services, require_s3: bool) -> dict[str, Any]:
    """Analyse a multipart upload; it is kept in S3 when a bucket is set (or `require_s3`)."""
    async with request.form(max_files=1, max_fields=10) as form:
        data, filename = await _read_upload(form, services.settings.max_image_bytes)
        fields: dict[str, Any] = {
            k: v for k, v in form.items() if k != "file" and isinstance(v, str) and v
        }
    if "models" in fields:
        fields["models"] = [m.strip() for m in fields["models"].split(",") if m.strip()]
    body = _validated(fields, AnalysisOptions)
    if require_s3 or services.settings.s3_bucket:
        pointer = await _store_upload(data, services)
    else:
        pointer = f"upload:{filename}"
    request_ = _request(body, services, source_kind="upload", source=pointer, data=data)
    return await analyze(request_, services)


@router.post("/analyze", response_model=Analysis, openapi_extra=_BOTH_BODIES)
async def analyze_image(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Analyse an image given by `url` (JSON) or uploaded as multipart `file`."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _analyze_upload(request, services, require_s3=False)
    try:
        payload = await request.json()
    except ValueError as exc:
        raise InvalidRequest(
            'Send JSON like {"url": "https://..."} or a multipart upload.'
        ) from exc
    body = _validated(payload if isinstance(payload, dict) else {})
    source = {"source_kind": source_kind(body.url), "source": body.url}
    return await analyze(_request(body, services, **source), services)


@router.post(
    "/images",
    response_model=Analysis,
    status_code=201,
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": _MULTIPART}}
    },
)
async def upload_image(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Store an uploaded image in the S3 bucket, then analyse it."""
    return await _analyze_upload(request, services, require_s3=True)


@router.get("/analyses/{analysis_id}", response_model=Analysis)
async def read_analysis(analysis_id: str, services: ServicesDep) -> dict[str, Any]:
    """A stored analysis by id."""
    row = await services.store.get(analysis_id)
    if row is None:
        raise NotFound(f"No analysis with id '{analysis_id}'.")
    return response(row, cached=True)


@router.get("/models", response_model=list[ModelInfo])
async def read_models(services: ServicesDep) -> list[dict[str, Any]]:
    """The models, their Triton versions, readiness and weight provenance."""
    await services.catalog.refresh(services.triton)
    return [
        {
            "name": state.name,
            "triton_model": state.triton_model,
            "ready": state.ready,
            "version": state.version,
            "weights": state.weights,
        }
        for state in services.catalog.states.values()
    ]
