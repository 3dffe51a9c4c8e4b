"""The gateway's error vocabulary. Each error knows its HTTP status and `errortype`; they are
mapped to responses in one place (gateway.main)."""

from __future__ import annotations

from pydantic import BaseModel

# How long a client should wait before retrying a 503: about one model reload or restart.
RETRY_AFTER = {"Retry-After": "10"}


UNEXPECTED = "The gateway failed unexpectedly; the error was logged."
# Any other HTTP refusal (a wrong method's 405, ...), which no PicmetricError raises.
HTTP_ERROR = "http_error"


class ErrorBody(BaseModel):
    errortype: str
    message: str


class PicmetricError(Exception):
    """Base class: a failure with a message a person can act on."""

    status_code = 500
    errortype = "internal_error"
    headers: dict[str, str] = {}


class InvalidRequest(PicmetricError):
    """The request body or parameters are not acceptable."""

    status_code = 422
    errortype = "invalid_request"


class UnsupportedMediaType(PicmetricError):
    """A request body of a type the route does not take (JSON must say application/json)."""

    status_code = 415
    errortype = "unsupported_media_type"


class RequestTooLarge(PicmetricError):
    """A request body over its limit (an upload's is `ImageTooLarge`)."""

    status_code = 413
    errortype = "request_too_large"


class BodyTimeout(PicmetricError):
    """The request body did not arrive within PICMETRIC_BODY_TIMEOUT_S."""

    status_code = 408
    errortype = "request_timeout"
    headers = {"Connection": "close"}


class FaceSizeNotRunnable(PicmetricError):
    """A valid min_face_size that MTCNN cannot run on this photo (under PNet's window, or an image
    pyramid over the cascade's budget): the photo's refusal, like 413 and 415, not the request's
    (422 means a request outside the documented schema)."""

    status_code = 400
    errortype = "face_size_not_runnable"


class UntrustedHost(PicmetricError):
    """The request's Host is not one of PICMETRIC_ALLOWED_HOSTS."""

    status_code = 400
    errortype = "untrusted_host"


class Unauthorized(PicmetricError):
    """A missing or unknown API key."""

    status_code = 401
    errortype = "unauthorized"


class UnsupportedScheme(PicmetricError):
    """The image URL uses a scheme other than http, https or s3."""

    status_code = 400
    errortype = "unsupported_scheme"


class ForbiddenURL(PicmetricError):
    """The image URL points at a loopback, private or otherwise internal address."""

    status_code = 403
    errortype = "forbidden_url"


class FetchError(PicmetricError):
    """The image could not be fetched from its URL or bucket."""

    status_code = 400
    errortype = "fetch_failed"


class URLUnreachable(FetchError):
    """Nothing answered at the image URL's host."""

    errortype = "url_unreachable"


class RemoteHTTPError(FetchError):
    """The image URL answered with an HTTP error status."""

    errortype = "remote_http_error"


class FetchTimeout(FetchError):
    """The image took too long to arrive."""

    errortype = "fetch_timeout"


def size_text(nbytes: int) -> str:
    """A size as a person reads it: "20 MiB", "512 KiB", "1000 bytes"."""
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= size:
            return f"{nbytes / size:.4g} {unit}"
    return f"{nbytes} bytes"


class ImageTooLarge(PicmetricError):
    """The image is over the byte or pixel limit."""

    status_code = 413
    errortype = "image_too_large"

    @classmethod
    def over(cls, limit: int) -> ImageTooLarge:
        """Over the per-image byte limit."""
        return cls(
            f"Image is larger than the {size_text(limit)} limit (PICMETRIC_MAX_IMAGE_BYTES); "
            "send a smaller file."
        )


class UnsupportedImage(PicmetricError):
    """The bytes are not an image format we decode."""

    status_code = 415
    errortype = "unsupported_image"


class NotFound(PicmetricError):
    """No stored analysis has this id."""

    status_code = 404
    errortype = "not_found"


class ModelUnavailable(PicmetricError):
    """Triton or one of the requested models is not ready."""

    status_code = 503
    errortype = "model_unavailable"
    headers = RETRY_AFTER


class InferenceTimeout(PicmetricError):
    """Triton did not answer in time."""

    status_code = 504
    errortype = "inference_timeout"


class UpstreamError(PicmetricError):
    """Triton answered with an error."""

    status_code = 502
    errortype = "upstream_error"


class StorageError(PicmetricError):
    """The results database, or the bucket an upload must be kept in, is unavailable; nothing was
    stored."""

    status_code = 503
    errortype = "storage_unavailable"
    headers = RETRY_AFTER


class Overloaded(PicmetricError):
    """The gateway already runs as many analyses as it may (PICMETRIC_MAX_ANALYSES_IN_FLIGHT)."""

    status_code = 503
    errortype = "overloaded"
    # About one analysis on a CPU host: by then a slot has likely come free.
    headers = {"Retry-After": "2"}


class TooManyFetches(PicmetricError):
    """This API key already has as many image fetches in flight as it may
    (PICMETRIC_MAX_FETCHES_PER_KEY)."""

    status_code = 429
    errortype = "too_many_fetches"
    # About one fetch's deadline's worth of a slow upstream: by then one has likely ended.
    headers = {"Retry-After": "5"}


class RateLimited(PicmetricError):
    """This client sent more requests than its rate limit allows (PICMETRIC_RATE_LIMIT)."""

    status_code = 429
    errortype = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class JobLimit(PicmetricError):
    """A job over one of its key's limits (PICMETRIC_JOBS_MAX_RUNNING_PER_KEY,
    PICMETRIC_JOBS_MAX_QUEUED_PHOTOS_PER_KEY): retry once the key's other jobs have finished."""

    status_code = 429
    errortype = "job_limit"
    headers = {"Retry-After": "60"}


class JobTooLarge(PicmetricError):
    """A job's source over its bounds (PICMETRIC_JOBS_MAX_PHOTOS,
    PICMETRIC_JOBS_MANIFEST_MAX_BYTES)."""

    status_code = 413
    errortype = "job_too_large"


class JobNotFound(NotFound):
    """No job of this API key has this id."""


class QueueUnavailable(PicmetricError):
    """The job queue (Redis, PICMETRIC_REDIS_URL) is not configured or not reachable."""

    status_code = 503
    errortype = "queue_unavailable"
    headers = RETRY_AFTER


def error_kinds() -> list[type[PicmetricError]]:
    """PicmetricError and every subclass of it."""
    kinds, todo = [], [PicmetricError]
    while todo:
        kind = todo.pop()
        kinds.append(kind)
        todo.extend(kind.__subclasses__())
    return kinds


def error_statuses() -> list[int]:
    """Every HTTP status an error of ours answers with (500 included), for OpenAPI's responses."""
    return sorted({kind.status_code for kind in error_kinds()})
