"""What the models found, typed from the moment Triton answers until a renderer
(`gateway.rendering`) turns it into JSON. Coordinates are the photo's pixels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from core.models import FACE_KEYPOINTS, PERSON_LABEL

SourceKind = Literal["url", "s3", "upload"]
PIXEL_DECIMALS = 2  # coordinates to a hundredth of a pixel; more digits are noise


class Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class Box(Result):
    x_min: float
    y_min: float
    x_max: float
    y_max: float

    @classmethod
    def of(cls, corners: Sequence[float]) -> Box:
        """From (x_min, y_min, x_max, y_max) as a model answers them."""
        x_min, y_min, x_max, y_max = (round(float(c), PIXEL_DECIMALS) for c in corners)
        return cls(x_min=x_min, y_min=y_min, x_max=x_max, y_max=y_max)


class Label(Result):
    """An ImageNet label of the whole photo (ResNet50)."""

    label: str
    confidence: float


class DetectedObject(Label):
    """A located COCO object (YOLOv3)."""

    box: Box


class Face(Result):
    """A face (MTCNN) with its five landmarks, named in `FACE_KEYPOINTS` order."""

    confidence: float
    box: Box
    keypoints: dict[str, tuple[float, float]]

    @classmethod
    def of(cls, confidence: float, box: Sequence[float], points: Sequence[Sequence[float]]) -> Face:
        """From the `mtcnn` model's outputs: score, box and landmarks [5, 2] (x, y)."""
        keypoints = {
            name: (round(float(x), PIXEL_DECIMALS), round(float(y), PIXEL_DECIMALS))
            for name, (x, y) in zip(FACE_KEYPOINTS, points, strict=True)
        }
        return cls(confidence=float(confidence), box=Box.of(box), keypoints=keypoints)


Detection = Label | DetectedObject | Face


class Results(Result):
    """Per model, what it found; None for a model that did not run."""

    resnet50: list[Label] | None = None
    yolov3: list[DetectedObject] | None = None
    mtcnn: list[Face] | None = None


class Summary(Result):
    people: int
    faces: int
    objects: dict[str, int]
    labels: list[str]

    @classmethod
    def of(cls, results: Results) -> Summary:
        """People and faces counted, located objects counted per label, ImageNet labels."""
        objects = Counter(found.label for found in results.yolov3 or [])
        return cls(
            people=objects.get(PERSON_LABEL, 0),
            faces=len(results.mtcnn or []),
            objects=dict(objects),
            labels=[found.label for found in results.resnet50 or []],
        )


class Options(Result):
    threshold: float
    max_results: int


class ImageInfo(Result):
    width: int
    height: int
    sha256: str


class Source(Result):
    kind: SourceKind
    url: str


class ModelRun(Result):
    name: str
    version: str | None
    weights: dict[str, object]
    latency_ms: float


class Analysis(Result):
    """One stored analysis: the /v1 answer."""

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
