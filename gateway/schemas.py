"""Request and response bodies of the typed /v1 API and the seed's /api (for OpenAPI at /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ModelName = Literal["resnet50", "yolov3", "mtcnn"]


class AnalysisOptions(BaseModel):
    models: list[ModelName] | None = Field(None, description="default: every ready model")
    threshold: float | None = Field(None, ge=0, lt=1, description="minimum confidence")
    max_results: int | None = Field(None, ge=1, le=100, description="ImageNet labels, at most")


class AnalyzeRequest(AnalysisOptions):
    url: str = Field(description="http(s):// URL or s3://bucket/key of the image")


class SeedRequest(BaseModel):
    url: str
    threshold: float = Field(0.2, ge=0, lt=1)


class Box(BaseModel):
    x_min: float
    y_min: float
    x_max: float
    y_max: float


class Label(BaseModel):
    label: str
    confidence: float


class DetectedObject(Label):
    box: Box


class Face(BaseModel):
    confidence: float
    box: Box
    keypoints: dict[str, tuple[float, float]]


class Results(BaseModel):
    resnet50: list[Label] | None = None
    yolov3: list[DetectedObject] | None = None
    mtcnn: list[Face] | None = None


class Summary(BaseModel):
    people: int
    faces: int
    objects: dict[str, int]
    labels: list[str]


class ImageInfo(BaseModel):
    width: int
    height: int
    sha256: str


class Source(BaseModel):
    kind: Literal["url", "s3", "upload"]
    url: str


class ModelRun(BaseModel):
    name: str
    version: str | None
    weights: dict[str, object]
    latency_ms: float


class Options(BaseModel):
    threshold: float
    max_results: int


class Analysis(BaseModel):
    id: str
    cached: bool
    created_at: str
    source: Source
    image: ImageInfo
    options: Options
    models: list[ModelRun]
    results: Results
    summary: Summary
    timings_ms: dict[str, float]


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
