"""What one analysis is asked: the photo's source (its bytes once in hand), the models, the
options, whether the models must run and whether an upload is kept. Made by the HTTP edge from a
request body (gateway.http.bodies) and by the seed's /api."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.intake import urlguard
from gateway.results import DEFAULT_MIN_FACE_SIZE, Options, SourceKind
from gateway.settings import Settings

# Whether an upload is kept (in the S3 bucket, else the local upload folder): not; where it can be
# (a place is set and the privacy rebuild takes its format); or it must be (/v1/images: refused
# otherwise).
KeepUpload = Literal["no", "if_possible", "required"]
NO_UPLOAD_PLACE = (
    "Keeping uploads needs a place: set PICMETRIC_S3_BUCKET, or PICMETRIC_UPLOAD_DIR for a folder "
    "on the gateway's disk (picmetric serve keeps them in ~/.cache/picmetric/uploads)."
)


@dataclass(frozen=True)
class AnalysisRequest:
    source_kind: SourceKind
    # The URL; an upload's `upload:<file name>`, or once it is kept, its s3:// pointer.
    source: str
    models: list[str] | None  # None: every model that is ready
    options: Options
    data: bytes | None = None  # the photo's bytes: uploaded, or once fetched (fetch_image)
    fresh: bool = False  # run the models even when the store has the answer (no-cache)
    keep: KeepUpload = "no"
    fetch_ms: float = 0.0  # how long fetching `data` took


def url_kind(url: str) -> SourceKind:
    scheme = urlguard.check_scheme(url)
    return "s3" if scheme == "s3" else "upload" if scheme == "upload" else "url"


def options_or_defaults(
    settings: Settings,
    threshold: float | None,
    max_results: int | None,
    min_face_size: str | None = None,
) -> Options:
    """The request's options; what it leaves out comes from the settings (MTCNN's face size:
    the package's 20 px)."""
    return Options(
        threshold=settings.default_threshold if threshold is None else threshold,
        max_results=settings.default_max_results if max_results is None else max_results,
        min_face_size=DEFAULT_MIN_FACE_SIZE if min_face_size is None else min_face_size,
    )


def requested(
    settings: Settings,
    source: str,
    models: list[str] | None,
    threshold: float | None,
    max_results: int | None,
    min_face_size: str | None,
    data: bytes | None = None,
    fresh: bool = False,
    keep: KeepUpload = "no",
) -> AnalysisRequest:
    """What a client asked of `source` (a URL; an upload's `upload:<file name>`, with its
    `data`), the options it leaves out filled from the settings (`options_or_defaults`)."""
    return AnalysisRequest(
        source_kind="upload" if data is not None else url_kind(source),
        source=source,
        models=models,
        options=options_or_defaults(settings, threshold, max_results, min_face_size),
        data=data,
        fresh=fresh,
        keep=keep,
    )
