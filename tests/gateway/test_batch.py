"""POST /v1/batch end to end: many photos in one request, in order, each failing alone, an
album summary, limits, and the photos sharing Triton's dynamic batches."""

from __future__ import annotations

import httpx
import pytest
import tritonclient.grpc as grpcclient

from picmetric.triton_server import TritonServer
from tests.gateway.conftest import Gateway
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
    # The eight photo files, twice over; a copy may be answered from the store meanwhile.
    urls = [f"{photo_server}/{PHOTOS[i % 4]}.{'png' if i % 8 >= 4 else 'jpg'}" for i in range(16)]
    urls[13] = f"{photo_server}/notes.txt"
    before = settled(lambda: _executions(triton, "resnet50"))
    # A threshold no other test uses, so nothing is answered from the store.
    answer = _batch(
        gateway, json={"urls": urls, "models": ["resnet50", "mtcnn"], "threshold": 0.0191}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [item["index"] for item in body["results"]] == list(range(16))
    broken = body["results"][13]
    assert broken["analysis"] is None and broken["error"]["errortype"] == "unsupported_image"
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
    assert 8 <= inferences - before[0] <= 15  # each file once at least
    assert 0 < executions - before[1] < inferences - before[0], "shared dynamic batches"


def test_batch_limits_are_clear_errors(gateway: Gateway, photo_server: str) -> None:
    too_many = _batch(gateway, json={"urls": [f"{photo_server}/coffee.jpg"] * 17})
    assert too_many.status_code == 422 and "at most 16 images" in too_many.json()["message"]
    empty = _batch(gateway, json={"urls": []})
    assert empty.status_code == 422 and empty.json()["errortype"] == "invalid_request"
    # Four uploads of 2.5 MB: each under the 3 MB image limit, together over the 8 MB batch one.
    files = [
        ("file", (f"{i}.jpg", b"\xff\xd8\xff" + bytes(2_500_000), "image/jpeg")) for i in range(4)
    ]
    too_big = _batch(gateway, files=files)
    assert too_big.status_code == 413 and too_big.json()["errortype"] == "image_too_large"
    assert "8000000 byte limit" in too_big.json()["message"]


@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_batch_of_uploads_answers_each_file(gateway: Gateway, photo_server: str) -> None:
    files = [
        ("file", (f"{name}.jpg", httpx.get(f"{photo_server}/{name}.jpg").content, "image/jpeg"))
        for name in ("astronaut", "chelsea")
    ]
    answer = _batch(gateway, files=files, data={"models": "mtcnn", "threshold": "0.0192"})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["analysis"]["source"]["kind"] for r in results] == ["upload", "upload"]
    assert len(results[0]["analysis"]["results"]["mtcnn"]) == 1  # the astronaut
