"""The gateway end to end: real uvicorn, Triton, S3 (moto server), SQLite and PostgreSQL. Over
300 lines on purpose: these are the contract tests of /api and /v1/analyze side by side, on the
two gateways (one per database) that the whole file shares."""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image

from picmetric.triton_server import TritonServer
from tests.gateway.conftest import BUCKET, Gateway, s3_client
from tests.utils.analyses import count_analyses
from tests.utils.ports import free_port
from tests.utils.real_photos import jpeg_bytes, real_photo
from tests.utils.triton_stats import settled

pytestmark = pytest.mark.integration

SEED_RESULTS = ("resnet50_objects", "yolo_objects", "mtcnn_faces")
SEED_KEYS = {"success", "url", *SEED_RESULTS}
BOX_KEYS = {"x_min", "x_max", "y_min", "y_max"}
KEYPOINTS = {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}


def _post(gateway: Gateway, path: str, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", timeout=120, **kwargs)  # type: ignore[arg-type]


def _is_float_string(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?(e-\d+)?", value) is not None


def _check_seed_box(box: dict[str, object]) -> None:
    assert set(box) == BOX_KEYS
    assert all(isinstance(v, str) and re.fullmatch(r"-?\d+", v) for v in box.values())


def test_seed_api_contract_field_by_field(gateway: Gateway, photo_server: str) -> None:
    url = f"{photo_server}/astronaut.jpg"
    answer = _post(gateway, "/api", json={"url": url, "threshold": 0.0})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == SEED_KEYS
    assert body["success"] == "true" and body["url"] == url
    assert body["resnet50_objects"], "threshold 0 must return labels"
    for item in body["resnet50_objects"]:
        assert set(item) == {"confidence", "object"}
        assert _is_float_string(item["confidence"]) and isinstance(item["object"], str)
    assert body["yolo_objects"], "threshold 0 keeps every detection after NMS"
    for item in body["yolo_objects"]:
        assert set(item) == {"confidence", "object", "bounding_box"}
        assert _is_float_string(item["confidence"]) and isinstance(item["object"], str)
        _check_seed_box(item["bounding_box"])
    assert len(body["mtcnn_faces"]) == 1, "the astronaut has one face"
    for face in body["mtcnn_faces"]:
        assert set(face) == {"confidence", "bounding_box", "keypoints"}
        assert _is_float_string(face["confidence"])
        _check_seed_box(face["bounding_box"])
        assert set(face["keypoints"]) == KEYPOINTS
        assert all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(c, int) for c in p)
            for p in face["keypoints"].values()
        )


def _seed_confidences(body: dict[str, list[dict[str, str]]]) -> list[float]:
    return [float(item["confidence"]) for key in SEED_RESULTS for item in body[key]]


def test_seed_api_threshold_defaults_to_0_2(gateway: Gateway, photo_server: str) -> None:
    """Without a threshold /api answers as with 0.2. On the astronaut something is kept (the
    face: MTCNN has real weights) and something is dropped: at threshold 0 /api gives ResNet50's
    top 10 labels, and the 10th of a softmax is at most 0.1."""
    url = f"{photo_server}/astronaut.jpg"
    default = _post(gateway, "/api", json={"url": url}).json()
    assert default == _post(gateway, "/api", json={"url": url, "threshold": 0.2}).json()
    kept = _seed_confidences(default)
    assert kept and min(kept) >= 0.2
    everything = _seed_confidences(_post(gateway, "/api", json={"url": url, "threshold": 0}).json())
    assert min(everything) < 0.2, "threshold 0 must answer something the default drops"


def test_v1_analyze_by_url_answers_numbers_and_is_stored(
    gateway: Gateway, photo_server: str, photos: dict[str, np.ndarray]
) -> None:
    url = f"{photo_server}/coffee.png"
    answer = _post(gateway, "/v1/analyze", json={"url": url, "threshold": 0.0, "max_results": 3})
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
    answer = _post(
        gateway,
        "/v1/images",
        files={"file": ("rocket.jpg", data, "image/jpeg")},
        data={"models": "resnet50", "threshold": "0.0"},
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    key = f"uploads/{hashlib.sha256(data).hexdigest()}"
    assert body["source"] == {"kind": "upload", "url": f"s3://{BUCKET}/{key}"}
    stored = s3_client(gateway.s3_url).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert stored == data
    again = httpx.get(f"{gateway.url}/v1/analyses/{body['id']}").json()
    assert again["results"] == body["results"]
    by_s3 = _post(gateway, "/v1/analyze", json={"url": body["source"]["url"], "threshold": 0.01})
    assert by_s3.status_code == 200, by_s3.text
    assert by_s3.json()["source"]["kind"] == "s3"
    assert by_s3.json()["image"]["sha256"] == body["image"]["sha256"]


def _inference_count(triton: TritonServer) -> int:
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:

        def read() -> int:
            stats = client.get_inference_statistics("resnet50", as_json=True)["model_stats"][0]
            return int(stats.get("inference_count", 0))

        return settled(read)


def test_cache_hit_leaves_triton_statistics_unchanged(
    gateway: Gateway, photo_server: str, triton: TritonServer
) -> None:
    body = {"url": f"{photo_server}/astronaut.png", "threshold": 0.0123, "models": ["resnet50"]}
    start = _inference_count(triton)
    first = _post(gateway, "/v1/analyze", json=body).json()
    before = _inference_count(triton)
    assert before > start, "the first request is a miss and runs resnet50"
    second = _post(gateway, "/v1/analyze", json=body).json()
    assert _inference_count(triton) == before
    assert second["cached"] is True and second["id"] == first["id"]
    assert second["results"] == first["results"]


def _metric(gateway: Gateway, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.compile(rf"^{re.escape(name)}(\{{(?P<labels>[^}}]*)\}})? (?P<value>\S+)$")
    for line in httpx.get(f"{gateway.url}/metrics").text.splitlines():
        match = pattern.match(line)
        if match and ",".join(sorted((match["labels"] or "").split(","))) == wanted:
            return float(match["value"])
    return 0.0


def test_metrics_appear_and_move_after_a_request(gateway: Gateway, photo_server: str) -> None:
    route = {"route": "/v1/analyze", "status": "200"}
    requests = _metric(gateway, "picmetric_requests_total", **route)
    fetches = _metric(gateway, "picmetric_stage_duration_seconds_count", stage="fetch")
    fetched = _metric(gateway, "picmetric_fetched_bytes_total", source="url")
    hits = _metric(gateway, "picmetric_cache_hits_total")
    inferences = _metric(gateway, "picmetric_inference_duration_seconds_count", model="resnet50")
    body = {"url": f"{photo_server}/chelsea.png", "threshold": 0.0456}
    for _ in range(2):  # the second one is a cache hit
        assert _post(gateway, "/v1/analyze", json=body).status_code == 200
    assert _metric(gateway, "picmetric_requests_total", **route) == requests + 2
    assert _metric(gateway, "picmetric_stage_duration_seconds_count", stage="fetch") == fetches + 2
    assert _metric(gateway, "picmetric_fetched_bytes_total", source="url") > fetched
    assert _metric(gateway, "picmetric_cache_hits_total") >= hits + 1
    # The first is a miss and runs resnet50 once; the cache hit runs nothing.
    ran = _metric(gateway, "picmetric_inference_duration_seconds_count", model="resnet50")
    assert ran == inferences + 1
    assert "picmetric_requests_in_flight" in httpx.get(f"{gateway.url}/metrics").text


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
    v1 = _post(gateway, "/v1/analyze", json={"url": url})
    assert (v1.status_code, v1.json()["errortype"]) == (status, errortype), v1.text
    assert v1.json()["message"]
    seed = _post(gateway, "/api", json={"url": url})
    assert seed.status_code == status
    assert seed.json() == {
        "success": "false",
        "errortype": errortype,
        "message": v1.json()["message"],
    }
    assert count_analyses(gateway.database_url) == rows


def test_invalid_requests_say_what_is_wrong(gateway: Gateway) -> None:
    answer = _post(gateway, "/v1/analyze", json={"url": "http://x/y.jpg", "models": ["nope"]})
    assert answer.status_code == 422 and answer.json()["errortype"] == "invalid_request"
    assert "models" in answer.json()["message"]
    no_url = _post(gateway, "/api", json={"threshold": 0.5})
    assert no_url.status_code == 422 and no_url.json()["success"] == "false"
    assert "url" in no_url.json()["message"]
    missing = httpx.get(f"{gateway.url}/v1/analyses/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json()["errortype"] == "not_found"


def test_health_readiness_models_and_docs(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/readyz", timeout=60)
    assert ready.status_code == 200, ready.text
    assert ready.json()["canary_ok"] is True
    models = {m["name"]: m for m in httpx.get(f"{gateway.url}/v1/models").json()}
    assert models["resnet50"]["ready"] is True
    assert models["resnet50"]["weights"]["kind"] == "random"
    assert models["resnet50"]["weights"]["seed"] == 0
    assert models["yolov3"]["ready"] is True
    assert models["yolov3"]["weights"]["kind"] == "random"
    assert models["mtcnn"]["ready"] is True
    assert models["mtcnn"]["weights"]["kind"] == "pretrained"
    spec = httpx.get(f"{gateway.url}/openapi.json").json()
    assert {"/api", "/v1/analyze", "/v1/images", "/v1/models"} <= set(spec["paths"])
    body = spec["paths"]["/v1/analyze"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(spec))
    assert set(refs) <= set(spec["components"]["schemas"]), "dangling $ref in the OpenAPI spec"
    assert httpx.get(f"{gateway.url}/docs").status_code == 200


def test_v1_faces_have_boxes_and_landmarks_in_original_pixels(
    gateway: Gateway, photo_server: str, photos: dict[str, np.ndarray]
) -> None:
    body = _post(
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
    names = (model_repository / "yolov3" / "coco_names.txt").read_text().splitlines()
    body = _post(
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


def test_v1_analyze_accepts_a_multipart_upload(gateway: Gateway, photo_server: str) -> None:
    data = httpx.get(f"{photo_server}/chelsea.png").content
    answer = _post(
        gateway,
        "/v1/analyze",
        files={"file": ("cat.png", data, "image/png")},
        data={"models": "resnet50,mtcnn", "threshold": "0.05", "max_results": "2"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["source"]["kind"] == "upload" and body["options"]["max_results"] == 2
    assert {m["name"] for m in body["models"]} == {"resnet50", "mtcnn"}
    bad = _post(
        gateway,
        "/v1/analyze",
        files={"file": ("x.png", data, "image/png")},
        data={"models": "resnet50,cats"},
    )
    assert bad.status_code == 422 and "models" in bad.json()["message"]
    empty = _post(gateway, "/v1/analyze", files={"file": ("x.png", b"", "image/png")})
    assert empty.status_code == 422 and "empty" in empty.json()["message"]


def test_v1_objects_from_a_reduced_decode_are_in_the_photos_pixels(gateway: Gateway) -> None:
    """YOLOv3 alone needs no more than 416 px: a 3 MP JPEG is decoded at half size (1008x756),
    yet the answer gives the photo's size and boxes in its pixels, turned by its EXIF
    orientation (6: shown as 1512x2016)."""
    jpeg = jpeg_bytes(real_photo(3))
    for orientation, data, (width, height) in (
        (1, jpeg, (2016, 1512)),
        (6, _turned(jpeg), (1512, 2016)),
    ):
        body = _post(
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


def _turned(jpeg: bytes) -> bytes:
    """The JPEG re-encoded with EXIF orientation 6 (shown turned a quarter clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()
