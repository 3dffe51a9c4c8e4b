"""POST /v1/annotate end to end: the photo answered as JPEG with the detections drawn where the
stored analysis says, faces blurred on request, EXIF orientation applied."""

from __future__ import annotations

import io
import re

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from gateway.images import drawing
from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.integration


def _annotate(gateway: Gateway, **kwargs: object) -> tuple[np.ndarray, dict]:  # type: ignore[type-arg]
    """The annotated photo (RGB) and its stored analysis."""
    answer = httpx.post(f"{gateway.url}/v1/annotate", timeout=120, **kwargs)  # type: ignore[arg-type]
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    drawn = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR_RGB)
    stored = httpx.get(f"{gateway.url}/v1/analyses/{answer.headers['X-Analysis-Id']}", timeout=30)
    assert stored.status_code == 200
    return drawn, stored.json()


def _landmarks_drawn(drawn: np.ndarray, face: dict) -> None:  # type: ignore[type-arg]
    assert set(face["keypoints"]) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    for x, y in face["keypoints"].values():
        colour = drawn[round(y), round(x)].astype(int)
        assert np.abs(colour - drawing.LANDMARK_COLOUR).max() < 60, (x, y, colour)


def _sharpness(rgb: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_annotate_draws_the_stored_faces_and_blurs_them_on_request(
    gateway: Gateway, photo_server: str, photos: dict[str, np.ndarray]
) -> None:
    body = {"url": f"{photo_server}/astronaut.png", "models": ["mtcnn"]}
    drawn, analysis = _annotate(gateway, json=body)
    original = photos["astronaut"]
    assert drawn.shape == original.shape
    (face,) = analysis["results"]["mtcnn"]
    _landmarks_drawn(drawn, face)
    box = face["box"]
    inside = (
        slice(round(box["y_min"]) + 8, round(box["y_max"]) - 8),
        slice(round(box["x_min"]) + 8, round(box["x_max"]) - 8),
    )
    assert np.abs(drawn[inside].astype(int) - original[inside]).max() > 100  # the marks
    blurred, again = _annotate(
        gateway, json=body, params={"blur_faces": "true"}
    )  # a cache hit: same faces
    assert again["results"]["mtcnn"] == analysis["results"]["mtcnn"]
    assert _sharpness(blurred[inside]) < 0.5 * _sharpness(drawn[inside])
    # Nothing drawn over a blurred face: no landmark, no box edge (a photo to share).
    for x, y in face["keypoints"].values():
        assert np.abs(blurred[round(y), round(x)].astype(int) - drawing.LANDMARK_COLOUR).max() > 60
    top = blurred[round(box["y_min"]), round(box["x_min"]) + 5 : round(box["x_max"]) - 5]
    assert (np.abs(top.astype(int) - drawing.FACE_COLOUR).max(axis=1) > 60).all()
    outside = (slice(300, 400), slice(300, 400))
    assert np.abs(blurred[outside].astype(int) - original[outside]).mean() < 4  # JPEG only


def test_annotate_marks_random_weights_on_the_photo(gateway: Gateway, photo_server: str) -> None:
    """YOLOv3 on random weights: a red banner across the top-left names it, and the header says
    so; MTCNN alone (real weights) has no banner."""
    url = f"{photo_server}/astronaut.png"
    answer = httpx.post(
        f"{gateway.url}/v1/annotate", json={"url": url, "models": ["yolov3"]}, timeout=120
    )
    assert answer.headers["X-Picmetric-Warnings"] == "random_weights=yolov3"
    drawn = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR_RGB)

    def red_share(rgb: np.ndarray) -> float:
        """The share of the banner's top rows (above its black text) in its red."""
        strip = rgb[0:2, 0:200].reshape(-1, 3).astype(int)
        return float((np.abs(strip - drawing.WARNING_COLOUR).max(axis=1) < 60).mean())

    assert red_share(drawn) > 0.9
    clean, _ = _annotate(gateway, json={"url": url, "models": ["mtcnn"]})
    assert red_share(clean) < 0.1


def test_annotate_applies_exif_orientation_before_drawing(
    gateway: Gateway, photos: dict[str, np.ndarray]
) -> None:
    """The astronaut stored a quarter turn anticlockwise with EXIF orientation 6 (turn clockwise
    to view): the answer is the upright photo, with the face where the upright one has it."""
    upright = photos["astronaut"][:, 64:]  # 512x448: a turn changes the shape
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(upright).copy()).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    drawn, analysis = _annotate(
        gateway,
        files={"file": ("turned.jpg", buffer.getvalue(), "image/jpeg")},
        data={"models": "mtcnn"},
    )
    assert drawn.shape == upright.shape
    assert (analysis["image"]["width"], analysis["image"]["height"]) == (448, 512)
    (face,) = analysis["results"]["mtcnn"]
    _landmarks_drawn(drawn, face)
    # The face in the upright photo's pixels: README's (180, 65)-(265, 172), less the 64 cut.
    assert abs(face["box"]["x_min"] - 116) < 8 and abs(face["box"]["y_min"] - 65) < 8


def _decodes(gateway: Gateway) -> float:
    """How many photos the gateway has decoded (its decode stage's count; before the first
    decode it exports none)."""
    text = httpx.get(f"{gateway.ops_url}/metrics", timeout=30).text
    line = r'^picmetric_stage_duration_seconds_count\{stage="decode"\} (\S+)$'
    found = re.search(line, text, re.M)
    return float(found[1]) if found else 0.0


@pytest.mark.parametrize("models", ["mtcnn", "resnet50"])
def test_annotate_decodes_the_photo_once(
    gateway: Gateway, photos: dict[str, np.ndarray], models: str
) -> None:
    """The drawing needs every pixel, so the analysis decodes the photo whole even for models
    that a reduced JPEG decode would serve (ResNet50 alone), and the drawing reuses it."""
    photo = cv2.resize(photos["astronaut"], (1024, 1024))
    photo[:8, :8] = np.random.default_rng().integers(0, 256, 3)  # a new photo: no cache hit
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    assert ok
    before = _decodes(gateway)
    drawn, _ = _annotate(
        gateway,
        files={"file": ("a.jpg", encoded.tobytes(), "image/jpeg")},
        data={"models": models},
    )
    assert drawn.shape == photo.shape
    assert _decodes(gateway) - before == 1
