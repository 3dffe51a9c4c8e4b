"""What the models found, typed from the moment Triton answers until a renderer
(`gateway.http.rendering`) turns it into JSON. Coordinates are the photo's pixels."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.models import FACE_KEYPOINTS, PERSON_LABEL, readable_label

SourceKind = Literal["url", "s3", "upload"]
# The longest source (URL, s3:// pointer, upload name) stored and answered; longer is refused
# before any work (422), not after inference by the database.
SOURCE_CHARS = 2048
PIXEL_DECIMALS = 2  # coordinates to a hundredth of a pixel; more digits are noise


def new_id() -> str:
    """A new analysis's or job's id: a random UUID, so that one id tells nothing of another."""
    return str(uuid.uuid4())


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
    """An ImageNet label of the whole photo (ResNet50), as words: `fox squirrel`."""

    # Kept readable (core.models.readable_label) here, so rows stored before are too; the seed's
    # /api spells labels as the seed did (gateway.http.rendering).
    label: str
    confidence: float

    @field_validator("label")
    @classmethod
    def _readable(cls, name: str) -> str:
        return readable_label(name)


class DetectedObject(Label):
    """A located COCO object (YOLOv3), named as COCO spells it: `airplane`, `tv`."""

    box: Box


class Face(Result):
    """A face (MTCNN) with its five landmarks, named in `FACE_KEYPOINTS` order, and the index of
    the YOLOv3 `person` box that contains it (None: no person box does, or YOLOv3 did not run)."""

    confidence: float
    box: Box
    keypoints: dict[str, tuple[float, float]]
    person: int | None = None

    @classmethod
    def of(cls, confidence: float, box: Sequence[float], points: Sequence[Sequence[float]]) -> Face:
        """From the `mtcnn` model's outputs: score, box and landmarks [5, 2] (x, y)."""
        keypoints = {
            name: (round(float(x), PIXEL_DECIMALS), round(float(y), PIXEL_DECIMALS))
            for name, (x, y) in zip(FACE_KEYPOINTS, points, strict=True)
        }
        return cls(confidence=float(confidence), box=Box.of(box), keypoints=keypoints)


Detection = Label | DetectedObject | Face


# The share of a face box that must lie inside a person box for the face to be that person's:
# faces at the edge of a loose person box still count.
FACE_IN_PERSON = 0.8


def _area(box: Box) -> float:
    return max(0.0, box.x_max - box.x_min) * max(0.0, box.y_max - box.y_min)


def _share_inside(inner: Box, outer: Box) -> float:
    """The share of `inner`'s area that lies inside `outer` (0 for an empty `inner`)."""
    width = min(inner.x_max, outer.x_max) - max(inner.x_min, outer.x_min)
    height = min(inner.y_max, outer.y_max) - max(inner.y_min, outer.y_min)
    area = _area(inner)
    return max(0.0, width) * max(0.0, height) / area if area > 0 else 0.0


class Results(Result):
    """Per model, what it found; None for a model that did not run."""

    resnet50: list[Label] | None = None
    yolov3: list[DetectedObject] | None = None
    mtcnn: list[Face] | None = None

    def with_faces_linked(self) -> Results:
        """Each face linked to the person box that holds the largest share of it (at least
        FACE_IN_PERSON; the smaller person box on a tie, as the nearer of overlapping people)."""
        if not self.mtcnn or self.yolov3 is None:
            return self
        people = [
            (i, found.box) for i, found in enumerate(self.yolov3) if found.label == PERSON_LABEL
        ]
        faces = []
        for face in self.mtcnn:
            shares = [(_share_inside(face.box, box), -_area(box), i) for i, box in people]
            best = max(shares, default=None)
            person = best[2] if best is not None and best[0] >= FACE_IN_PERSON else None
            faces.append(face.model_copy(update={"person": person}))
        return self.model_copy(update={"mtcnn": faces})


class Summary(Result):
    """The counts of what was found. A figure whose model did not run is None ("not counted"),
    never 0: people and objects need YOLOv3, faces MTCNN, people with a face both, labels
    ResNet50."""

    people: int | None
    faces: int | None
    people_with_face: int | None  # person boxes that hold a detected face
    objects: dict[str, int] | None
    labels: list[str] | None

    @classmethod
    def of(cls, results: Results) -> Summary:
        """People and faces counted, located objects counted per label, ImageNet labels."""
        objects = (
            None if results.yolov3 is None else Counter(found.label for found in results.yolov3)
        )
        faces = results.mtcnn
        linked = None
        if objects is not None and faces is not None:
            linked = len({face.person for face in faces if face.person is not None})
        return cls(
            people=None if objects is None else objects.get(PERSON_LABEL, 0),
            faces=None if faces is None else len(faces),
            people_with_face=linked,
            objects=None if objects is None else dict(objects),
            labels=None if results.resnet50 is None else [f.label for f in results.resnet50],
        )


WarningKind = Literal["random_weights", "model_skipped", "photo_reduced"]


class AnswerWarning(Result):
    """Something an answer's reader must know to read it right: a model on random weights (its
    findings are noise), a model that did not run although every model was asked for (its
    figures are not counted), a photo the models saw at a reduced size."""

    kind: WarningKind
    models: list[str] = []  # the models it concerns (none for `photo_reduced`)
    message: str

    @classmethod
    def random_weights(cls, models: list[str]) -> AnswerWarning:
        names = ", ".join(models)
        return cls(
            kind="random_weights",
            models=models,
            message=f"{names} ran on random weights (the download failed or was skipped): their "
            "labels and boxes are noise. Convert with real weights (picmetric convert).",
        )

    @classmethod
    def model_skipped(cls, models: list[str]) -> AnswerWarning:
        return cls(
            kind="model_skipped",
            models=models,
            message=f"{', '.join(models)} did not run (not ready on Triton): what they find is "
            "not counted (null), not zero.",
        )

    @classmethod
    def photo_reduced(cls, width: int, height: int, scale: float) -> AnswerWarning:
        return cls(
            kind="photo_reduced",
            message=f"The {width}x{height} photo was decoded at 1/{round(1 / scale)} of its size: "
            "no model asked for needs every pixel. Coordinates are still the photo's own pixels.",
        )


def weights_warnings(runs: Sequence[ModelRun]) -> list[AnswerWarning]:
    """A warning naming the models of `runs` on random weights, if any."""
    random = [run.name for run in runs if run.weights.get("kind") == "random"]
    return [AnswerWarning.random_weights(random)] if random else []


# The smallest face MTCNN looks for (`min_face_size`), spelled with its unit: "40px", pixels, or
# "2.5%", a share of the photo's short side (to a hundredth of a pixel). A bare number is refused:
# it would be ambiguous between the two.
DEFAULT_MIN_FACE_SIZE = "20px"  # the mtcnn package's default, and config.pbtxt's
MIN_FACE_PX = 12  # PNet's window: a smaller face is found only in an upsampled photo
MAX_FACE_PX = 10_000
FACE_SIZE_SYNTAX = (
    f"a whole number of pixels from {MIN_FACE_PX} to {MAX_FACE_PX:,} with 'px' (e.g. '40px'), "
    "or a share of the photo's short side above 0 and at most 100 with '%' (e.g. '2%', '2.5%', "
    "up to 3 decimals)"
)
_BLANK = "[ \t]*"
_FACE_SIZE = re.compile(  # then checked against the limits
    rf"{_BLANK}(?:(?P<px>0*[0-9]{{1,5}})px|(?P<percent>0*[0-9]{{1,3}}(?:\.[0-9]{{1,3}})?)%){_BLANK}"
)
# The strings face_size() accepts, limits included, as one regular expression: OpenAPI's
# `pattern` (JSON Schema cannot compare numbers). A test checks that both accept the same.
FACE_SIZE_PATTERN = (
    rf"^{_BLANK}(?:0*(?:1[2-9]|[2-9][0-9]|[1-9][0-9]{{2,3}}|10000)px"
    r"|(?:0*[1-9][0-9]?(?:\.[0-9]{1,3})?|0*100(?:\.0{1,3})?"
    rf"|0+\.(?:[1-9][0-9]{{0,2}}|0[1-9][0-9]?|00[1-9]))%){_BLANK}$"
)


def face_size(text: object) -> str:
    """`text` as a min_face_size in its one spelling ("040px" is "40px", "2.50%" is "2.5%");
    ValueError saying the syntax and limits otherwise (its field named by the caller)."""
    match = _FACE_SIZE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{FACE_SIZE_SYNTAX}; not {str(text)[:40]!r}")
    if match["px"] is not None:
        pixels = int(match["px"])
        if not MIN_FACE_PX <= pixels <= MAX_FACE_PX:
            raise ValueError(
                f"pixels from {MIN_FACE_PX}px (PNet's window) to {MAX_FACE_PX}px, not {pixels}px"
            )
        return f"{pixels}px"
    percent = Decimal(match["percent"])
    if not 0 < percent <= 100:
        raise ValueError(f"a share above 0% and at most 100%, not {percent}%")
    return f"{percent.normalize():f}%"


def face_pixels(size: str, height: int, width: int) -> float:
    """The pixels a min_face_size (`face_size`'s spelling) means for a `height` x `width`
    photo: its pixels, or its share of the short side rounded to a hundredth of a pixel."""
    if size.endswith("px"):
        return float(size[:-2])
    return round(float(Decimal(size[:-1]) * min(height, width) / 100), PIXEL_DECIMALS)


class Options(Result):
    threshold: float
    max_results: int
    # Rows stored before it was an option had the default.
    min_face_size: str = Field(
        DEFAULT_MIN_FACE_SIZE, description="the smallest face, as asked: '40px' or '2%'"
    )
    min_face_px: float | None = Field(
        None,
        description="the pixels MTCNN ran with for this photo; null: MTCNN did not run (or an "
        "answer stored before the option)",
    )

    @field_validator("min_face_size")
    @classmethod
    def _spelled(cls, size: str) -> str:
        return face_size(size)


class ImageInfo(Result):
    width: int  # as shown: EXIF or HEIF orientation applied
    height: int
    sha256: str
    has_location: bool = False  # the photo carried a GPS position (never stored or answered)
    taken_at: str | None = None  # when, as its EXIF says (ISO 8601, the camera's local time)
    phash: str | None = (
        None  # perceptual hash (gateway.images.quality), 16 hex digits; older rows: None
    )


class Quality(Result):
    """Simple figures of the photo's quality, measured on its grey pixels at one working size
    (gateway.quality), so photos of any size compare."""

    sharpness: float  # Laplacian's variance / grey levels' variance, >= 0 (sharp: 0.1-0.6)
    exposure: float  # mean luminance, 0 (black) to 1 (white)
    shadows: float  # share of pixels clipped black (grey level <= 5), 0-1
    highlights: float  # share of pixels clipped white (grey level >= 250), 0-1
    noise: float  # estimated noise, standard deviation in grey levels (0-255), >= 0


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
    quality: Quality | None = None  # None for analyses stored before it was measured
    timings_ms: dict[str, float]
    warnings: list[AnswerWarning] = []  # empty: nothing to say
    # The analysis's trace (gateway.tracing), when it was traced; left out of the answer otherwise.
    trace_id: str | None = Field(default=None, exclude_if=lambda value: value is None)
