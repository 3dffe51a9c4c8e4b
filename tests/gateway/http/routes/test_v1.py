"""/v1 (gateway/http/routes/v1.py) end to end: real uvicorn, Triton, S3 (moto server), SQLite and
PostgreSQL; the answers' numbers, storage, uploads kept in S3, and errors, on both databases."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from core.models import COCO_SPELLINGS
from gateway.tenancy import ANONYMOUS
from tests.gateway.conftest import BUCKET, KEYPOINTS, Gateway, post, s3_client
from tests.utils.analyses import count_analyses
from tests.utils.ports import free_port
from tests.utils.real_photos import jpeg_bytes, real_photo

pytestmark = pytest.mark.integration


def test_v1_analyze_by_url_answers_numbers_and_is_stored(
    gateway: Gateway, photo_server: str, photos: dict[str, np.ndarray]
) -> None:
    url = f"{photo_server}/coffee.png"
    answer = post(gateway, "/v1/analyze", json={"url": url, "threshold": 0.0, "max_results": 3})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    raw = httpx.get(url).content
    assert body["image"]["sha256"] == hashlib.sha256(raw).hexdigest()
    height, width = photos["coffee"].shape[:2]
    assert (body["image"]["width"], body["image"]["height"]) == (width, height)
    assert body["source"] == {"kind": "url", "url": url}
    labels = body["results"]["resnet50"]
    assert 1 <= len(labels) <= 3
    assert all(isinstance(label["confidence"], float) for label in labels)
    assert body["summary"]["labels"] == [label["label"] for label in labels]
    assert {"people", "faces", "objects"} <= set(body["summary"])
    model = next(m for m in body["models"] if m["name"] == "resnet50")
    assert model["version"] == "1" and model["weights"]["kind"] == "random"
    assert model["latency_ms"] > 0
    stored = httpx.get(f"{gateway.url}/v1/analyses/{body['id']}").json()
    assert stored["results"] == body["results"] and stored["image"] == body["image"]


def test_v1_upload_goes_to_s3_then_is_readable_by_id(gateway: Gateway, photo_server: str) -> None:
    data = httpx.get(f"{photo_server}/rocket.jpg").content
    answer = post(
        gateway,
        "/v1/images",
        files={"file": ("rocket.jpg", data, "image/jpeg")},
        data={"models": "resnet50", "threshold": "0.0"},
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    key = f"uploads/{ANONYMOUS}/{hashlib.sha256(data).hexdigest()}"  # a gateway without keys
    assert body["source"] == {"kind": "upload", "url": f"s3://{BUCKET}/{key}"}
    stored = s3_client(gateway.s3_url).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert stored == data
    again = httpx.get(f"{gateway.url}/v1/analyses/{body['id']}").json()
    assert again["results"] == body["results"]
    by_s3 = post(gateway, "/v1/analyze", json={"url": body["source"]["url"], "threshold": 0.01})
    assert by_s3.status_code == 200, by_s3.text
    assert by_s3.json()["source"]["kind"] == "s3"
    assert by_s3.json()["image"]["sha256"] == body["image"]["sha256"]


BAD_URLS = [
    (lambda base: f"http://127.0.0.1:{free_port()}/photo.jpg", 400, "url_unreachable"),
    (lambda base: f"{base}/missing.jpg", 400, "remote_http_error"),
    (lambda base: f"{base}/notes.txt", 415, "unsupported_image"),
    (lambda base: f"{base}/huge.jpg", 413, "image_too_large"),
    (lambda base: "ftp://example.com/photo.jpg", 400, "unsupported_scheme"),
    (lambda base: f"s3://{BUCKET}/no/such/key.jpg", 400, "fetch_failed"),
    (lambda base: "s3://another-teams-bucket/photo.jpg", 403, "forbidden_url"),
]


@pytest.mark.parametrize(("make_url", "status", "errortype"), BAD_URLS)
def test_bad_input_is_a_4xx_with_errortype_and_stores_nothing(
    gateway: Gateway,
    photo_server: str,
    make_url,
    status: int,
    errortype: str,  # type: ignore[no-untyped-def]
) -> None:
    url = make_url(photo_server)
    rows = count_analyses(gateway.database_url)
    v1 = post(gateway, "/v1/analyze", json={"url": url})
    assert (v1.status_code, v1.json()["errortype"]) == (status, errortype), v1.text
    assert v1.json()["message"]
    seed = post(gateway, "/api", json={"url": url})
    assert seed.status_code == status
    assert seed.json() == {
        "success": "false",
        "errortype": errortype,
        "message": v1.json()["message"],
    }
    assert count_analyses(gateway.database_url) == rows


def test_v1_answers_say_what_did_not_run_and_what_runs_on_random_weights(
    gateway: Gateway, photo_server: str
) -> None:
    """ResNet50 and MTCNN only: people and objects are null ("not counted"), not 0; the answer,
    its header, the stored copy and /readyz name the models on random weights."""
    url = f"{photo_server}/astronaut.png"
    answer = post(gateway, "/v1/analyze", json={"url": url, "models": ["resnet50", "mtcnn"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    summary = body["summary"]
    assert (summary["people"], summary["people_with_face"], summary["objects"]) == (None,) * 3
    assert summary["faces"] == 1 and isinstance(summary["labels"], list)
    (warning,) = body["warnings"]
    assert warning["kind"] == "random_weights" and warning["models"] == ["resnet50"]
    assert answer.headers["X-Picmetric-Warnings"] == "random_weights=resnet50"
    stored = httpx.get(f"{gateway.url}/v1/analyses/{body['id']}")
    assert stored.json()["warnings"] == body["warnings"] and stored.json()["summary"] == summary
    assert stored.headers["X-Picmetric-Warnings"] == "random_weights=resnet50"
    ready = httpx.get(f"{gateway.url}/readyz", timeout=60).json()
    assert ready == {"ready": True, "random_weights": ["resnet50", "yolov3"]}
    models = httpx.get(f"{gateway.url}/v1/models")
    assert models.headers["X-Picmetric-Warnings"] == "random_weights=resnet50+yolov3"
    faces_only = post(gateway, "/v1/analyze", json={"url": url, "models": ["mtcnn"]})
    assert faces_only.json()["warnings"] == [] and "X-Picmetric-Warnings" not in faces_only.headers


def test_v1_faces_have_boxes_and_landmarks_in_original_pixels(
    gateway: Gateway, photo_server: str, photos: dict[str, np.ndarray]
) -> None:
    body = post(
        gateway, "/v1/analyze", json={"url": f"{photo_server}/astronaut.png", "models": ["mtcnn"]}
    ).json()
    (face,) = body["results"]["mtcnn"]
    assert body["summary"]["faces"] == 1 and body["results"]["resnet50"] is None
    height, width = photos["astronaut"].shape[:2]
    box = face["box"]
    assert 0 <= box["x_min"] < box["x_max"] <= width and 0 <= box["y_min"] < box["y_max"] <= height
    assert set(face["keypoints"]) == KEYPOINTS
    for x, y in face["keypoints"].values():
        assert box["x_min"] <= x <= box["x_max"] and box["y_min"] <= y <= box["y_max"]
    left, right = face["keypoints"]["left_eye"], face["keypoints"]["right_eye"]
    assert left[0] < right[0], "left_eye is the one on the image's left"


def test_v1_objects_are_counted_with_boxes_inside_the_image(
    gateway: Gateway, photo_server: str, photos: dict[str, np.ndarray], model_repository: Path
) -> None:
    """Random YOLOv3 weights find arbitrary objects; at threshold 0 there are some, and every
    one must be a COCO class with a box inside the original (non-square) image."""
    darknet = (model_repository / "yolov3" / "coco_names.txt").read_text().splitlines()
    names = [COCO_SPELLINGS.get(name, name) for name in darknet]  # as COCO spells them
    body = post(
        gateway,
        "/v1/analyze",
        json={"url": f"{photo_server}/coffee.jpg", "models": ["yolov3"], "threshold": 0.0},
    ).json()
    objects = body["results"]["yolov3"]
    assert objects, "threshold 0 keeps every detection after NMS"
    height, width = photos["coffee"].shape[:2]
    for item in objects:
        assert item["label"] in names and 0 <= item["confidence"] <= 1
        box = item["box"]
        assert 0 <= box["x_min"] <= box["x_max"] <= width
        assert 0 <= box["y_min"] <= box["y_max"] <= height
    counts = Counter(item["label"] for item in objects)
    assert body["summary"]["objects"] == dict(counts)
    assert body["summary"]["people"] == counts.get("person", 0)


def test_v1_objects_from_a_reduced_decode_are_in_the_photos_pixels(gateway: Gateway) -> None:
    """YOLOv3 alone needs no more than 416 px: a 3 MP JPEG is decoded at half size (1008x756),
    yet the answer gives the photo's size and boxes in its pixels, turned by its EXIF
    orientation (6: shown as 1512x2016)."""
    jpeg = jpeg_bytes(real_photo(3))
    for orientation, data, (width, height) in (
        (1, jpeg, (2016, 1512)),
        (6, _turned(jpeg), (1512, 2016)),
    ):
        body = post(
            gateway,
            "/v1/analyze",
            files={"file": ("phone.jpg", data, "image/jpeg")},
            data={"models": "yolov3", "threshold": "0"},
        ).json()
        assert (body["image"]["width"], body["image"]["height"]) == (width, height), orientation
        boxes = [item["box"] for item in body["results"]["yolov3"]]
        assert len(boxes) > 10, "threshold 0 keeps every detection after NMS"
        assert all(0 <= b["x_min"] <= b["x_max"] <= width for b in boxes)
        assert all(0 <= b["y_min"] <= b["y_max"] <= height for b in boxes)
        # In the decoded image's pixels they would all be within half the photo's size.
        assert max(b["x_max"] for b in boxes) > width / 2 + 50, orientation
        assert max(b["y_max"] for b in boxes) > height / 2 + 50, orientation
        kinds = [w["kind"] for w in body["warnings"]]
        assert kinds == ["random_weights", "photo_reduced"], body["warnings"]


def _turned(jpeg: bytes) -> bytes:
    """The JPEG re-encoded with EXIF orientation 6 (shown turned a quarter clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()
