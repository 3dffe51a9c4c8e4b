"""POST /v1/batch end to end: many photos in one request, in order, each failing alone, an
album summary, limits, and the photos sharing Triton's dynamic batches."""

from __future__ import annotations

import io

import cv2
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image

from gateway.images.quality import hash_distance
from gateway.pipeline.album import BURST_BITS, NEAR_BITS
from picmetric.triton_server import TritonServer
from tests.gateway.conftest import FRESH, Gateway, metric
from tests.utils.mtcnn_faces import photos
from tests.utils.triton_stats import settled

pytestmark = pytest.mark.integration

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _batch(gateway: Gateway, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/batch", timeout=300, **kwargs)  # type: ignore[arg-type]


def _executions(triton: TritonServer, model: str) -> tuple[int, int]:
    """(inferences, executions) of `model` so far."""
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_batch_of_16_answers_in_order_and_one_broken_image_fails_alone(
    gateway: Gateway, photo_server: str, triton: TritonServer
) -> None:
    # The eight photo files, twice over.
    urls = [f"{photo_server}/{PHOTOS[i % 4]}.{'png' if i % 8 >= 4 else 'jpg'}" for i in range(16)]
    urls[13] = f"{photo_server}/notes.txt"
    before = settled(lambda: _executions(triton, "resnet50"))
    unsupported = metric(gateway, "picmetric_errors_total", errortype="unsupported_image")
    answer = _batch(gateway, json={"urls": urls, "models": ["resnet50", "mtcnn"]}, headers=FRESH)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [item["index"] for item in body["results"]] == list(range(16))
    broken = body["results"][13]
    assert broken["analysis"] is None and broken["error"]["errortype"] == "unsupported_image"
    # Counted as a request's error is, though the batch answers 200.
    assert (
        metric(gateway, "picmetric_errors_total", errortype="unsupported_image") == unsupported + 1
    )
    for i, item in enumerate(body["results"]):
        if i != 13:
            assert item["error"] is None and item["analysis"]["source"]["url"] == urls[i]
    album = body["album"]
    assert (album["images"], album["analysed"], album["failed"]) == (16, 15, 1)
    faces = sum(
        item["analysis"]["summary"]["faces"] for item in body["results"] if item["analysis"]
    )
    assert album["faces"] == faces >= 4  # the astronaut's face, four times
    assert album["labels"] and album["labels"][0]["images"] >= 1
    inferences, executions = settled(lambda: _executions(triton, "resnet50"))
    assert inferences - before[0] == 8  # each file once: a batch analyses a URL once
    assert 0 < executions - before[1] < inferences - before[0], "shared dynamic batches"


def test_batch_limits_are_clear_errors(gateway: Gateway, photo_server: str) -> None:
    too_many = _batch(gateway, json={"urls": [f"{photo_server}/coffee.jpg"] * 17})
    assert (
        too_many.status_code == 422
        and "at most 16 images (PICMETRIC_MAX_BATCH_IMAGES)" in too_many.json()["message"]
    )
    empty = _batch(gateway, json={"urls": []})
    assert empty.status_code == 422 and empty.json()["errortype"] == "invalid_request"
    # Four uploads of 2.5 MB: each under the 3 MB image limit, together over the 8 MB batch one.
    files = [
        ("file", (f"{i}.jpg", b"\xff\xd8\xff" + bytes(2_500_000), "image/jpeg")) for i in range(4)
    ]
    too_big = _batch(gateway, files=files)
    assert too_big.status_code == 413 and too_big.json()["errortype"] == "image_too_large"
    assert "7.629 MiB limit (PICMETRIC_MAX_BATCH_BYTES)" in too_big.json()["message"]


@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_batch_of_uploads_answers_each_file(gateway: Gateway, photo_server: str) -> None:
    files = [
        ("file", (f"{name}.jpg", httpx.get(f"{photo_server}/{name}.jpg").content, "image/jpeg"))
        for name in ("astronaut", "chelsea")
    ]
    answer = _batch(gateway, files=files, data={"models": "mtcnn"}, headers=FRESH)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["analysis"]["source"]["kind"] for r in results] == ["upload", "upload"]
    assert len(results[0]["analysis"]["results"]["mtcnn"]) == 1  # the astronaut


@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_batch_says_what_its_photos_did_not_run(gateway: Gateway, photo_server: str) -> None:
    """Without YOLOv3 the album's people and objects are null ("not counted"), not 0; the
    photos' warnings once at the top and in the header; MTCNN alone (real weights) warns of
    nothing."""
    urls = [f"{photo_server}/{name}.jpg" for name in ("astronaut", "chelsea")]
    answer = _batch(gateway, json={"urls": urls, "models": ["resnet50", "mtcnn"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    album = body["album"]
    assert (album["people"], album["people_with_face"], album["objects"]) == (None, None, None)
    assert album["faces"] == 1  # the astronaut's; the cat has none
    (warning,) = body["warnings"]
    assert warning["kind"] == "random_weights" and warning["models"] == ["resnet50"]
    assert answer.headers["X-Picmetric-Warnings"] == "random_weights=resnet50"
    faces = _batch(gateway, json={"urls": urls, "models": ["mtcnn"]})
    assert faces.json()["warnings"] == [] and "X-Picmetric-Warnings" not in faces.headers
    assert faces.json()["album"]["labels"] is None and album["labels"] is not None


def _jpeg(rgb: np.ndarray, taken_at: str | None = None) -> bytes:
    """A JPEG (Pillow), with EXIF DateTimeOriginal as a camera writes it ("2026:05:01 12:00:00")."""
    exif = Image.Exif()
    if taken_at is not None:
        exif.get_ifd(0x8769)[0x9003] = taken_at
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def _shifted(rgb: np.ndarray, dx: float, dy: float = 0) -> np.ndarray:
    """The photo moved by (dx, dy) px, as the next shot of a hand-held burst."""
    height, width = rgb.shape[:2]
    move = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(rgb, move, (width, height), borderMode=cv2.BORDER_REFLECT)


def _brightened(rgb: np.ndarray) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * 1.3 + 10, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_batch_groups_bursts_names_the_sharpest_and_never_groups_unrelated_photos(
    gateway: Gateway,
) -> None:
    """A burst of the astronaut (moved 6 px, blurred, brightened) is one group whatever EXIF
    says; the rocket and its copy moved by 6 % of its width are too far apart for copies
    (NEAR_BITS) but taken 2 s apart, so a burst; coffee and chelsea, taken in the same seconds as
    the rocket, and the cameraman are each their own scene; the file that is no photo fails and
    is in no group."""
    real = photos()
    astronaut, rocket = real["astronaut"], real["rocket"]
    at = "2026:05:01 12:00:0{}"
    uploads = [
        _jpeg(astronaut),
        _jpeg(_shifted(astronaut, 5.5, 3.5)),
        _jpeg(cv2.GaussianBlur(astronaut, (0, 0), 2)),
        _jpeg(_brightened(astronaut)),
        _jpeg(real["coffee"], at.format(0)),
        _jpeg(real["chelsea"], at.format(1)),
        _jpeg(rocket, at.format(0)),
        _jpeg(_shifted(rocket, rocket.shape[1] * 0.06), at.format(2)),
        _jpeg(real["camera"]),
        b"not a photo\n" * 100,
    ]
    files = [("file", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(uploads)]
    answer = _batch(gateway, files=files, data={"models": "mtcnn"}, headers=FRESH)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    results, album = body["results"], body["album"]
    assert results[9]["error"]["errortype"] == "unsupported_image"
    analyses = [item["analysis"] for item in results[:9]]
    hashes = [a["image"]["phash"] for a in analyses]
    sharpness = [a["quality"]["sharpness"] for a in analyses]
    assert analyses[7]["image"]["taken_at"] == "2026-05-01T12:00:02"
    assert NEAR_BITS < hash_distance(hashes[6], hashes[7]) <= BURST_BITS  # a burst by its time

    assert album["groups"] == [{"images": [0, 1, 2, 3], "best": 0}, {"images": [6, 7], "best": 6}]
    for group in album["groups"]:
        assert group["best"] == max(group["images"], key=lambda i: sharpness[i])
    assert sharpness[2] < sharpness[0] / 5  # the blurred shot
    scene = {i: n for n, group in enumerate(album["groups"]) for i in group["images"]}
    for i in range(9):
        for j in range(i + 1, 9):
            if scene.get(i, -1 - i) != scene.get(j, -1 - j):  # unrelated: far apart
                assert hash_distance(hashes[i], hashes[j]) > BURST_BITS, (i, j)
    assert (album["analysed"], album["failed"], album["scenes"]) == (9, 1, 5)

    # What the batch answered is stored: reading the analysis back answers the same.
    stored = httpx.get(f"{gateway.url}/v1/analyses/{analyses[1]['id']}", timeout=30).json()
    assert stored["quality"] == analyses[1]["quality"]
    assert stored["image"] == analyses[1]["image"]
