"""Request bodies, and the response bodies other than an analysis (`gateway.results`) and a
batch's answer (`gateway.pipeline.album`), of the typed /v1 API and the seed's /api, for validation
and for OpenAPI at /docs."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import JsonDict

from core.models import OFFERED_MODELS, ModelName
from gateway.errors import ErrorBody
from gateway.images import ACCEPTED_FORMATS
from gateway.jobs.progress import JobView
from gateway.jobs.results import JobResult
from gateway.results import (
    DEFAULT_MIN_FACE_SIZE,
    FACE_SIZE_PATTERN,
    FACE_SIZE_SYNTAX,
    SOURCE_CHARS,
    AnswerWarning,
    face_size,
)
from gateway.settings import Settings

# What an image URL looks like, for OpenAPI; the gateway checks the scheme itself (400
# unsupported_scheme, a message that says which schemes work) and everything else by fetching.
IMAGE_URL: JsonDict = {"format": "uri", "pattern": r"^(https?|s3)://[^\s/?#]+\S*$", "minLength": 8}
ImageURL = Annotated[str, Field(max_length=SOURCE_CHARS)]
# A form's `models`: one or more names, comma-separated.
_NAME = f"({'|'.join(OFFERED_MODELS)})"
# The most photos in one batch the schema states: PICMETRIC_MAX_BATCH_IMAGES's default (the
# gateway checks its own setting, 422 past it).
BATCH_IMAGES: int = Settings.model_fields["max_batch_images"].default
MODEL_LIST = rf"^\s*{_NAME}(\s*,\s*{_NAME})*\s*$"
# `min_face_size`, for OpenAPI (its limits are checked by gateway.results.face_size).
MIN_FACE_SIZE: JsonDict = {"pattern": FACE_SIZE_PATTERN, "examples": ["40px", "2%"]}


def _face_size_field() -> Any:
    return Field(
        None,
        description=f"the smallest face MTCNN looks for: {FACE_SIZE_SYNTAX} (default: "
        f"{DEFAULT_MIN_FACE_SIZE}, the mtcnn package's); smaller finds smaller faces, slower",
        json_schema_extra=MIN_FACE_SIZE,
    )


def _not_true_or_false(value: object) -> object:
    """A number, not JSON's true or false (pydantic reads them as 1 and 0: `"threshold": true`
    would run at 1.0)."""
    if isinstance(value, bool):
        raise ValueError("a number, not true or false")
    return value


def _spelled(value: object) -> str | None:
    """A min_face_size in its one spelling; any other JSON type is refused with the syntax."""
    return None if value is None else face_size(value)


class AnalysisOptions(BaseModel):
    # An unknown or misspelled field is refused (422 naming it), never ignored.
    model_config = ConfigDict(extra="forbid")

    models: list[ModelName] | None = Field(
        None, min_length=1, description="default: every ready model; at least one when given"
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="minimum confidence, 0 to 1 (default: the gateway's, 0.2)"
    )
    max_results: int | None = Field(None, ge=1, le=100, description="ImageNet labels, at most")
    min_face_size: str | None = _face_size_field()

    _face_size = field_validator("min_face_size", mode="before")(_spelled)
    _numbers = field_validator("threshold", "max_results", mode="before")(_not_true_or_false)


class AnalyzeRequest(AnalysisOptions):
    url: ImageURL = Field(
        description=f"http(s):// URL or s3://bucket/key of the image: {ACCEPTED_FORMATS}",
        json_schema_extra=IMAGE_URL,
    )


class BatchRequest(AnalysisOptions):
    # Any strings: a URL that is not one fails alone, in its item of the answer.
    urls: list[ImageURL] = Field(
        min_length=1,
        description=f"http(s):// URLs or s3://bucket/key ({ACCEPTED_FORMATS}), analysed in this "
        "order",
        json_schema_extra={"maxItems": BATCH_IMAGES},
    )


# The most URLs one job's list takes (PICMETRIC_JOBS_MAX_PHOTOS's default, as stated by the
# schema; the JSON body limit comes first for long lists: a manifest takes more).
JOB_PHOTOS: int = Settings.model_fields["jobs_max_photos"].default


class JobSourceBody(BaseModel):
    """Exactly one of: an S3 prefix, a list of URLs, a manifest in S3."""

    model_config = ConfigDict(extra="forbid")

    s3_prefix: str | None = Field(
        None,
        max_length=SOURCE_CHARS,
        description="s3://bucket/prefix/: every object under it (within PICMETRIC_S3_READ_FROM)",
    )
    urls: list[ImageURL] | None = Field(
        None,
        min_length=1,
        description="http(s):// URLs or s3://bucket/key",
        json_schema_extra={"maxItems": JOB_PHOTOS},
    )
    manifest: str | None = Field(
        None,
        max_length=SOURCE_CHARS,
        description="s3://bucket/key of a text file: one URL, or key in its bucket, per line",
    )

    @model_validator(mode="after")
    def _one_source(self) -> JobSourceBody:
        given = [name for name in ("s3_prefix", "urls", "manifest") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("give exactly one of s3_prefix, urls and manifest")
        return self


class JobRequest(AnalysisOptions):
    source: JobSourceBody
    webhook_url: str | None = Field(
        None,
        max_length=SOURCE_CHARS,
        description=(
            "POSTed the job, signed (Picmetric-Signature), when it ends: its last photo "
            "answered, or cancelled"
        ),
    )
    export: str | None = Field(
        None,
        max_length=SOURCE_CHARS,
        description=(
            "s3://bucket/prefix/ (within PICMETRIC_JOBS_EXPORT_TO): once done, the results "
            "are written there as JSON Lines shards, part-00000.jsonl, ..."
        ),
    )


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: none")


class JobResults(BaseModel):
    results: list[JobResult]
    warnings: list[AnswerWarning] = Field(
        [], description="the page's analyses' warnings, each kind for the same models once"
    )
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: none")


class SeedRequest(BaseModel):
    """The seed's body: other keys are ignored, as the Flask service ignored them."""

    url: ImageURL = Field(json_schema_extra=IMAGE_URL)
    threshold: float | None = Field(None, ge=0, le=1, description="default: the gateway's")
    min_face_size: str | None = _face_size_field()

    _face_size = field_validator("min_face_size", mode="before")(_spelled)


def multipart_schema(files: bool = False) -> dict[str, Any]:
    """An upload's form: the image as `file` (`files`: one or more `file` fields, a batch); the
    options as in JSON, `models` comma-separated."""
    schema = AnalysisOptions.model_json_schema()
    models = {
        "type": "string",
        "pattern": MODEL_LIST,
        "description": "comma-separated, e.g. resnet50,yolov3; repeated fields add up",
    }
    binary = {
        "type": "string",
        "format": "binary",
        "minLength": 1,
        "description": f"the photo: {ACCEPTED_FORMATS}",
    }
    schema["properties"] = {
        "file": {"type": "array", "items": binary, "minItems": 1, "maxItems": BATCH_IMAGES}
        if files
        else binary,
        **{name: _not_null(field) for name, field in schema["properties"].items()},
        "models": models,
    }
    schema["required"] = ["file"]
    return schema


def _not_null(field: dict[str, Any]) -> dict[str, Any]:
    """A form has no null: an option left out is unset, so `anyOf: [X, null]` becomes X."""
    choices = [c for c in field.get("anyOf", []) if c.get("type") != "null"]
    if len(choices) != 1:
        return field
    return {**{k: v for k, v in field.items() if k != "anyOf"}, **choices[0]}


class ModelInfo(BaseModel):
    name: str
    triton_model: str
    ready: bool
    version: str | None
    weights: dict[str, object]


class SeedErrorBody(ErrorBody):
    """An error in the seed's shape: `success` is the string "false"."""

    success: str = Field(pattern="^false$")


class SeedBoundingBox(BaseModel):
    x_min: str
    x_max: str
    y_min: str
    y_max: str


class SeedObject(BaseModel):
    confidence: str
    object: str


class SeedYoloObject(SeedObject):
    bounding_box: SeedBoundingBox


class SeedFace(BaseModel):
    confidence: str
    bounding_box: SeedBoundingBox
    keypoints: dict[str, list[int]]


class SeedResponse(BaseModel):
    success: str
    url: str
    resnet50_objects: list[SeedObject]
    yolo_objects: list[SeedYoloObject]
    mtcnn_faces: list[SeedFace]
