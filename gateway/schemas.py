"""Request bodies, and the response bodies other than an analysis (`gateway.results`), of the
typed /v1 API and the seed's /api, for validation and for OpenAPI at /docs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from core.models import ModelName


class AnalysisOptions(BaseModel):
    models: list[ModelName] | None = Field(None, description="default: every ready model")
    threshold: float | None = Field(None, ge=0, lt=1, description="minimum confidence")
    max_results: int | None = Field(None, ge=1, le=100, description="ImageNet labels, at most")


class AnalyzeRequest(AnalysisOptions):
    url: str = Field(description="http(s):// URL or s3://bucket/key of the image")


class BatchRequest(AnalysisOptions):
    urls: list[str] = Field(
        min_length=1, description="http(s):// URLs or s3://bucket/key, analysed in this order"
    )


class SeedRequest(BaseModel):
    url: str
    threshold: float | None = Field(None, ge=0, lt=1, description="default: the gateway's")


def multipart_schema(files: bool = False) -> dict[str, Any]:
    """An upload's form: the image as `file` (`files`: one or more `file` fields, a batch); the
    options as in JSON, `models` comma-separated."""
    schema = AnalysisOptions.model_json_schema()
    models = {"type": "string", "description": "comma-separated, e.g. resnet50,yolov3"}
    binary = {"type": "string", "format": "binary"}
    schema["properties"] = {
        "file": {"type": "array", "items": binary, "minItems": 1} if files else binary,
        **schema["properties"],
        "models": models,
    }
    schema["required"] = ["file"]
    return schema


class ModelInfo(BaseModel):
    name: str
    triton_model: str
    ready: bool
    version: str | None
    weights: dict[str, object]


class ErrorBody(BaseModel):
    errortype: str
    message: str


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
