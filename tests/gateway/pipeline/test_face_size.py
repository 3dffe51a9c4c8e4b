"""The `min_face_size` option through a real gateway (uvicorn, Triton, SQLite, Redis for jobs,
loopback): for 20 px and 1, 2 and 5 % of a 3 MP photo's short side, the faces equal the mtcnn
package's run with the same min_face_size on the same decoded photo; a bad value is a 422 naming
the option on every route that takes it, before anything runs; a photo it cannot run on (under
PNet's window, or a pyramid over the cascade's budget) is a 400 of its own, not Triton's 502; a
stored 20 px answer is not reused for 40 px; `picmetric analyze --min-face-size` passes it on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from picmetric.client import ExitCode
from picmetric.triton_server import TritonServer
from tests.utils.mtcnn_faces import Detections, assert_same_faces, levels_within_pnet, oracle
from tests.utils.real_photos import decoded, jpeg_bytes, real_photo
from tests.utils.redis import redis_servers
from tests.utils.services import gateway_env, gateway_process

pytestmark = pytest.mark.integration

TIMEOUT_S = 120


@pytest.fixture(scope="module")
def base(
    triton: TritonServer, model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("gateway-face-size")
    with redis_servers(appendonly=False) as redis:
        env = gateway_env(
            triton,
            model_repository,
            f"sqlite:///{folder / 'analyses.db'}",
            allow_private_urls="true",  # the photo server, on loopback
            redis_url=redis.url,
        )
        with gateway_process(env, folder / "gateway.log") as url:
            yield url


@pytest.fixture(scope="module")
def photo_3mp() -> bytes:
    """2016x1512, six faces from 40 px to a quarter of the short side."""
    return jpeg_bytes(real_photo(3))


def _upload(base: str, data: bytes, **fields: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/analyze",
        files={"file": ("photo.jpg", data, "image/jpeg")},
        data={"models": "mtcnn", **fields},
        timeout=TIMEOUT_S,
    )


def _detections(answer: dict[str, Any]) -> Detections:
    faces = answer["results"]["mtcnn"]
    boxes = [[f["box"][k] for k in ("x_min", "y_min", "x_max", "y_max")] for f in faces]
    keypoints = [list(f["keypoints"].values()) for f in faces]
    return Detections(
        np.array(boxes, float).reshape(-1, 4),
        np.array([f["confidence"] for f in faces], float),
        np.array(keypoints, float).reshape(-1, 5, 2),
    )


@pytest.mark.slow
def test_faces_equal_the_packages_with_the_same_min_face_size(base: str, photo_3mp: bytes) -> None:
    """Oracle: MTCNN().detect_faces(min_face_size=the pixels the answer says) on the photo as the
    gateway decodes it; 5 % (75.6 px) loses the smaller faces, so the option reached the model."""
    from mtcnn import MTCNN

    detector = MTCNN()
    image = decoded(photo_3mp)
    counts = {}
    for size, pixels in (("20px", 20.0), ("1%", 15.12), ("2%", 30.24), ("5%", 75.6)):
        answer = _upload(base, photo_3mp, min_face_size=size).raise_for_status().json()
        assert answer["options"]["min_face_size"] == size
        assert answer["options"]["min_face_px"] == pixels
        with levels_within_pnet():
            want = oracle(detector, image, min_face_size=pixels)
        assert_same_faces(_detections(answer), want, f"min_face_size {size}")
        counts[size] = len(want)
    assert counts["20px"] >= 5 and counts["5%"] < counts["20px"], counts


def test_an_absent_option_is_20px_and_a_stored_20px_answer_is_not_reused_for_40px(
    base: str, photos: dict[str, np.ndarray]
) -> None:
    ok, png = cv2.imencode(".png", cv2.cvtColor(photos["astronaut"], cv2.COLOR_RGB2BGR))
    assert ok
    data = png.tobytes()
    first = _upload(base, data).raise_for_status().json()
    assert not first["cached"]
    assert first["options"]["min_face_size"] == "20px" and first["options"]["min_face_px"] == 20
    again = _upload(base, data, min_face_size="20px").raise_for_status().json()
    assert again["cached"], "20px spelled out is the default: the stored answer"
    larger = _upload(base, data, min_face_size="40px").raise_for_status().json()
    assert not larger["cached"] and larger["options"]["min_face_size"] == "40px"
    assert larger["options"]["min_face_px"] == 40
    assert _upload(base, data, min_face_size="040px").json()["cached"]
    # The astronaut's face (about 100 px) is found at both; at 60 % (307 px) it is not.
    assert len(first["results"]["mtcnn"]) == len(larger["results"]["mtcnn"]) == 1
    none = _upload(base, data, min_face_size="60%").raise_for_status().json()
    assert not none["cached"] and none["results"]["mtcnn"] == []


BAD = ["40", 40, "11px", "0%", "2.5555%", "10001px", "40 px"]


@pytest.mark.parametrize("value", BAD)
def test_a_bad_value_is_a_422_naming_the_option_on_every_route(
    base: str, photo_server: str, value: object
) -> None:
    url = f"{photo_server}/astronaut.jpg"
    form = {"min_face_size": str(value)}
    files = {"file": ("a.jpg", b"\xff\xd8not read", "image/jpeg")}
    sent = {
        "/v1/analyze": {"json": {"url": url, "min_face_size": value}},
        "/v1/analyze upload": {"files": files, "data": form},
        "/v1/annotate": {"json": {"url": url, "min_face_size": value}},
        "/v1/batch": {"json": {"urls": [url], "min_face_size": value}},
        "/v1/batch upload": {"files": files, "data": form},
        "/v1/images": {"files": files, "data": form},
        "/v1/jobs": {"json": {"source": {"urls": [url]}, "min_face_size": value}},
        "/api": {"json": {"url": url, "min_face_size": value}},
    }
    for route, request in sent.items():
        answer = httpx.post(f"{base}{route.split()[0]}", timeout=TIMEOUT_S, **request)
        assert answer.status_code == 422, (route, answer.text)
        body = answer.json()
        assert body["errortype"] == "invalid_request", route
        assert body["message"].startswith("Invalid request: min_face_size: "), (route, body)
        if route == "/api":
            assert body["success"] == "false"  # the seed's shape


def test_a_value_the_photo_cannot_run_is_refused_before_any_inference(base: str) -> None:
    """1 % of a 1 MP photo's short side is under PNet's window; 12 px on a 17 MP photo makes a
    pyramid over the cascade's budget: each a 400 face_size_not_runnable (the photo's refusal:
    422 is for requests outside the schema) saying the least this photo takes."""
    small = jpeg_bytes(real_photo(1))
    answer = _upload(base, small, min_face_size="1%")
    assert answer.status_code == 400, answer.text
    assert answer.json()["errortype"] == "face_size_not_runnable"
    assert answer.json()["message"] == (
        "min_face_size 1% is 8.64 px on this 1152x864 photo, less than 12 px (PNet's window); "
        "ask for 12px or more."
    )
    flat = np.full((3600, 4800, 3), 128, np.uint8)
    ok, large = cv2.imencode(".jpg", flat)
    assert ok
    answer = _upload(base, large.tobytes(), min_face_size="12px")
    assert answer.status_code == 400, answer.text
    message = answer.json()["message"]
    assert message.startswith("min_face_size 12px (12 px) makes MTCNN's image pyramid"), message
    assert message.endswith(
        "for this 4800x3600 photo, more than its 32,000,000; ask for 13px or more."
    )
    assert _upload(base, large.tobytes(), min_face_size="13px").status_code == 200
    # Without mtcnn the option does not apply to the photo.
    resnet = _upload(base, small, min_face_size="1%", models="resnet50")
    assert resnet.status_code == 200 and resnet.json()["options"]["min_face_px"] is None


def test_the_seeds_api_takes_the_option(base: str, photo_server: str) -> None:
    url = f"{photo_server}/astronaut.jpg"
    default = httpx.post(f"{base}/api", json={"url": url}, timeout=TIMEOUT_S).json()
    assert len(default["mtcnn_faces"]) == 1
    large = {"url": url, "min_face_size": "60%"}  # 307 px: far larger than the astronaut's face
    answer = httpx.post(f"{base}/api", json=large, timeout=TIMEOUT_S).json()
    assert answer["success"] == "true" and answer["mtcnn_faces"] == []


def _picmetric(base: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "picmetric", "analyze", "--gateway", base, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)


def test_picmetric_analyze_takes_min_face_size(base: str, photo_server: str) -> None:
    url = f"{photo_server}/astronaut.png"
    run = _picmetric(base, url, "--models", "mtcnn", "--min-face-size", "60%", "--json")
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["options"]["min_face_size"] == "60%" and answer["options"]["min_face_px"] == 307.2
    assert answer["results"]["mtcnn"] == []
    refused = _picmetric(base, url, "--min-face-size", "0.02")
    assert refused.returncode == ExitCode.BAD_INPUT
    assert "422" in refused.stderr and "min_face_size" in refused.stderr
