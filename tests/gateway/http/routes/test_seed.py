"""The seed's /api (gateway/http/routes/seed.py): the old Flask service's JSON, field by field, on
the real gateway; the README's example of it is a real answer."""

from __future__ import annotations

import json
import re

import pytest

from core.models import COCO_NAMES
from core.paths import MODEL_REPOSITORY, PROJECT_ROOT
from tests.gateway.conftest import BOX_KEYS, KEYPOINTS, Gateway, post

pytestmark = pytest.mark.integration


SEED_RESULTS = ("resnet50_objects", "yolo_objects", "mtcnn_faces")
SEED_KEYS = {"success", "url", *SEED_RESULTS}
# The names the seed answered for YOLOv3: Darknet's list (`sofa`, `tvmonitor`), not /v1's COCO.
DARKNET_NAMES = set((MODEL_REPOSITORY / COCO_NAMES).read_text().splitlines())


def _is_float_string(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?(e-\d+)?", value) is not None


def _check_seed_box(box: dict[str, object]) -> None:
    assert set(box) == BOX_KEYS
    assert all(isinstance(v, str) and re.fullmatch(r"-?\d+", v) for v in box.values())


def test_seed_api_contract_field_by_field(gateway: Gateway, photo_server: str) -> None:
    url = f"{photo_server}/astronaut.jpg"
    answer = post(gateway, "/api", json={"url": url, "threshold": 0.0})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == SEED_KEYS
    assert body["success"] == "true" and body["url"] == url
    assert body["resnet50_objects"], "threshold 0 must return labels"
    for item in body["resnet50_objects"]:
        assert set(item) == {"confidence", "object"}
        assert _is_float_string(item["confidence"]) and isinstance(item["object"], str)
        assert " " not in item["object"], "the seed's ImageNet labels keep their underscores"
    assert body["yolo_objects"], "threshold 0 keeps every detection after NMS"
    for item in body["yolo_objects"]:
        assert set(item) == {"confidence", "object", "bounding_box"}
        assert _is_float_string(item["confidence"]) and isinstance(item["object"], str)
        _check_seed_box(item["bounding_box"])
        assert item["object"] in DARKNET_NAMES, item["object"]
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
    default = post(gateway, "/api", json={"url": url}).json()
    assert default == post(gateway, "/api", json={"url": url, "threshold": 0.2}).json()
    kept = _seed_confidences(default)
    assert kept and min(kept) >= 0.2
    everything = _seed_confidences(post(gateway, "/api", json={"url": url, "threshold": 0}).json())
    assert min(everything) < 0.2, "threshold 0 must answer something the default drops"


@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_the_readme_example_is_a_real_answer(gateway: Gateway, photo_server: str) -> None:
    """README's /api example, "the answer for the astronaut photo above" on the test models
    (random ResNet50 and YOLOv3 weights, seed 0): the same, but its `yolo_objects` cut to one."""
    readme = (PROJECT_ROOT / "README.md").read_text().split("### `POST /api`", 1)[1]
    example = re.search(r"```json\n(.*?)```", readme, re.S)
    assert example is not None, "README.md lost its /api example"
    shown = json.loads(example.group(1))
    url = f"{photo_server}/astronaut.jpg"
    answer = post(gateway, "/api", json={"url": url, "threshold": 0.2})
    assert answer.status_code == 200, answer.text
    body = {**answer.json(), "url": shown["url"]}
    body["yolo_objects"] = body["yolo_objects"][:1]
    assert _close(body, shown), (body, shown)


def _close(real: object, shown: object) -> bool:
    """The same seed answer, its confidences within 0.01 and its pixels within 2: another CPU's
    floating point (another SIMD path) moves them that little."""
    if isinstance(real, dict) and isinstance(shown, dict):
        return real.keys() == shown.keys() and all(_close(real[k], shown[k]) for k in real)
    if isinstance(real, list) and isinstance(shown, list):
        return len(real) == len(shown) and all(map(_close, real, shown))
    if isinstance(real, str) and isinstance(shown, str) and _is_float_string(real):
        if not _is_float_string(shown):
            return False
        tolerance = 0.01 if "." in real + shown else 2
        return abs(float(real) - float(shown)) <= tolerance
    if isinstance(real, int) and isinstance(shown, int):
        return abs(real - shown) <= 2
    return real == shown
