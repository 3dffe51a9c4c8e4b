"""From an HTTP request to analysis requests: a JSON body with `url`, or a multipart upload
(`file`, the options as form fields), or for a batch a list of either. Validation errors read
as FastAPI's own. No analysis slot is taken and nothing is kept here: the analysis does both once
the photo is in hand and its header accepted (gateway.pipeline.analysis). Reading and checking
a body is the `intake` span of the request's trace (gateway.tracing)."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from gateway import tracing
from gateway.errors import (
    ImageTooLarge,
    InvalidRequest,
    StorageError,
    UnsupportedMediaType,
    size_text,
)
from gateway.http.schemas import (
    AnalysisOptions,
    AnalyzeRequest,
    BatchRequest,
    JobRequest,
    SeedRequest,
)
from gateway.http.strict import query_parameters, unknown, unknown_keys
from gateway.jobs.submit import JobSpec
from gateway.pipeline.request import (
    NO_UPLOAD_PLACE,
    AnalysisRequest,
    KeepUpload,
    options_or_defaults,
    requested,
)
from gateway.results import SOURCE_CHARS
from gateway.services import Services

Body = TypeVar("Body", bound=BaseModel)
FORM_FIELDS = 10  # the options, with room to spare
UPLOAD_PREFIX = "upload:"  # the source of an upload not kept in S3: upload:<file name>
# What a JSON body that is not an object is, in JSON's words.
_JSON_TYPES: dict[type, str] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}
# The span of a request's body read and checked (an upload's bytes arriving), before its fetch.
INTAKE = "intake"


def validated(data: dict[str, Any], schema: type[Body], request: Request | None = None) -> Body:
    """Validate like FastAPI does for declared bodies, so errors read the same; a key the
    schema does not know is refused first, naming it and the accepted ones (unless the schema
    ignores extra keys: the seed's), or saying it is one of `request`'s query parameters."""
    unknown_keys(data, schema, query_parameters(request) if request else ())
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


def wants_fresh(request: Request) -> bool:
    """`Cache-Control: no-cache`: the client wants the models run, not the stored answer to the
    same bytes, models and options (RFC 9111's request directive)."""
    directives = request.headers.get("cache-control", "").lower().split(",")
    return "no-cache" in (d.strip() for d in directives)


def _analysis_request(
    body: AnalysisOptions,
    services: Services,
    request: Request,
    source: str,
    data: bytes | None = None,
    keep: KeepUpload = "no",
) -> AnalysisRequest:
    models: list[str] | None = list(dict.fromkeys(body.models)) if body.models else None
    return requested(
        services.settings,
        source,
        models,
        body.threshold,
        body.max_results,
        body.min_face_size,
        data=data,
        fresh=wants_fresh(request),
        keep=keep,
    )


async def _json(request: Request, example: str, or_upload: bool = True) -> dict[str, Any]:
    """The JSON body; only as `application/json`, which a web page on another origin cannot
    send without the browser asking first (text/plain it can)."""
    alternative = " or a multipart upload" if or_upload else ""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(
            f"Send JSON like {example} with Content-Type: application/json{alternative}, "
            f"{f'not {media_type}' if media_type else 'not without a Content-Type'}."
        )
    try:
        payload = await request.json()
    except RecursionError as exc:  # json's parser recurses per level of nesting
        raise InvalidRequest(f"The JSON is nested too deeply; send JSON like {example}.") from exc
    except ValueError as exc:
        raise InvalidRequest(f"Send JSON like {example}{alternative}.") from exc
    if not isinstance(payload, dict):
        sent = _JSON_TYPES.get(type(payload), "another value")
        raise InvalidRequest(f"Send a JSON object like {example}, not {sent}.")
    return payload


async def seed_request(request: Request) -> SeedRequest:
    """The seed's JSON body `{"url": ...}`, read after the route's API key check."""
    with tracing.span(INTAKE):
        payload = await _json(request, '{"url": "https://..."}', or_upload=False)
        return validated(payload, SeedRequest)


def _form_options(form: FormData, request: Request) -> AnalysisOptions:
    """The options of an upload's form, as in JSON: `models` comma-separated, its repeated
    fields added up (`-F models=mtcnn -F models=resnet50` is both) and an empty one refused, as
    `"models": []` (`-F models=$EMPTY` would run every model); another empty field is left out;
    any other field given twice, or a field not known, is refused."""
    accepted = ["file", *AnalysisOptions.model_fields]
    unknown(form.keys(), accepted, query=query_parameters(request))
    fields: dict[str, Any] = {}
    for name in AnalysisOptions.model_fields:
        sent = [v for v in form.getlist(name) if isinstance(v, str)]
        values = [v for v in sent if v.strip()]
        if name == "models" and sent:
            fields[name] = [m.strip() for v in sent for m in v.split(",") if m.strip()]
        elif len(values) > 1:
            raise InvalidRequest(f"The field '{name}' is given {len(values)} times; send it once.")
        elif values:
            fields[name] = values[0]
    return validated(fields, AnalysisOptions)


async def _read(upload: Any, limit: int) -> bytes:
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("Send the image as a multipart form field named 'file'.")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ImageTooLarge.over(limit)
    if not data:
        raise InvalidRequest(f"The uploaded file '{upload.filename or 'file'}' is empty.")
    return data


def _filename(upload: Any, default: str) -> str:
    """The upload's file name, within what is stored of it."""
    filename = getattr(upload, "filename", None) or default
    most = SOURCE_CHARS - len(UPLOAD_PREFIX)
    if len(filename) > most:
        raise InvalidRequest(
            f"An upload's file name has at most {most} characters, not {len(filename)}."
        )
    return filename


def _keep(services: Services, required: bool) -> KeepUpload:
    """Whether the analysis keeps the upload: `required` (/v1/images) needs a place (a bucket or
    the upload folder); otherwise it is kept where a bucket happens to be set."""
    settings = services.settings
    if required:
        if not settings.s3_bucket and not settings.upload_dir:
            raise StorageError(NO_UPLOAD_PLACE)
        return "required"
    return "if_possible" if settings.s3_bucket else "no"


async def upload_request(request: Request, services: Services, keep: bool) -> AnalysisRequest:
    """One multipart upload; kept in S3 when a bucket is set (or `keep`: it must be)."""
    with tracing.span(INTAKE):
        return await _upload_request(request, services, keep)


async def _upload_request(request: Request, services: Services, keep: bool) -> AnalysisRequest:
    async with request.form(max_files=1, max_fields=FORM_FIELDS) as form:
        upload = form.get("file")
        filename = _filename(upload, "upload")
        data = await _read(upload, services.settings.max_image_bytes)
        body = _form_options(form, request)
    return _analysis_request(
        body,
        services,
        request,
        source=f"{UPLOAD_PREFIX}{filename}",
        data=data,
        keep=_keep(services, keep),
    )


async def analysis_request(request: Request, services: Services) -> AnalysisRequest:
    """JSON `{"url": ...}` or a multipart upload."""
    with tracing.span(INTAKE):
        if is_multipart(request):
            return await _upload_request(request, services, keep=False)
        body = validated(await _json(request, '{"url": "https://..."}'), AnalyzeRequest, request)
        return _analysis_request(body, services, request, body.url)


def _too_many(most: int, sent: int) -> str:
    return (
        f"A batch holds at most {most} images (PICMETRIC_MAX_BATCH_IMAGES), not {sent}; send "
        "the rest in another batch."
    )


async def batch_requests(request: Request, services: Services) -> list[AnalysisRequest]:
    """JSON `{"urls": [...]}` or several multipart `file` fields, within the batch limits."""
    with tracing.span(INTAKE):
        return await _batch_requests(request, services)


async def _batch_requests(request: Request, services: Services) -> list[AnalysisRequest]:
    settings = services.settings
    most = settings.max_batch_images
    if not is_multipart(request):
        body = validated(
            await _json(request, '{"urls": ["https://...", ...]}'), BatchRequest, request
        )
        if len(body.urls) > most:
            raise InvalidRequest(_too_many(most, len(body.urls)))
        return [_analysis_request(body, services, request, url) for url in body.urls]
    async with request.form(max_files=4 * most, max_fields=FORM_FIELDS) as form:
        uploads = form.getlist("file")
        if not uploads:
            raise InvalidRequest("Send the images as multipart form fields named 'file'.")
        if len(uploads) > most:
            raise InvalidRequest(_too_many(most, len(uploads)))
        files: list[tuple[bytes, str]] = []
        total = 0
        for upload in uploads:
            data = await _read(upload, settings.max_image_bytes)
            total += len(data)
            if total > settings.max_batch_bytes:
                raise ImageTooLarge(
                    f"The batch is larger than its {size_text(settings.max_batch_bytes)} limit "
                    "(PICMETRIC_MAX_BATCH_BYTES)."
                )
            files.append((data, _filename(upload, f"upload{len(files)}")))
        options = _form_options(form, request)
    return [
        _analysis_request(
            options,
            services,
            request,
            source=f"{UPLOAD_PREFIX}{filename}",
            data=data,
            keep=_keep(services, required=False),
        )
        for data, filename in files
    ]


async def job_spec(request: Request, services: Services) -> JobSpec:
    """A job's JSON body: its source, the analysis options, an optional webhook URL and export
    place."""
    example = '{"source": {"s3_prefix": "s3://bucket/photos/"}}'
    body = validated(await _json(request, example, or_upload=False), JobRequest)
    source = body.source
    options = options_or_defaults(
        services.settings, body.threshold, body.max_results, body.min_face_size
    )
    models: list[str] | None = list(body.models) if body.models else None
    extra = {"webhook_url": body.webhook_url, "export": body.export}
    if source.urls:
        return JobSpec("urls", list(source.urls), models, options, **extra)
    if source.s3_prefix:
        return JobSpec("s3_prefix", source.s3_prefix, models, options, **extra)
    assert source.manifest is not None
    return JobSpec("manifest", source.manifest, models, options, **extra)
