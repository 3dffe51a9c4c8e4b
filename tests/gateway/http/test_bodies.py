"""Turning a request into an analysis request (gateway/http/bodies.py): JSON or multipart, and what
is wrong with a request said plainly."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.conftest import Gateway, post

pytestmark = pytest.mark.integration


def test_invalid_requests_say_what_is_wrong(gateway: Gateway) -> None:
    answer = post(gateway, "/v1/analyze", json={"url": "http://x/y.jpg", "models": ["nope"]})
    assert answer.status_code == 422 and answer.json()["errortype"] == "invalid_request"
    assert "models" in answer.json()["message"]
    no_url = post(gateway, "/api", json={"threshold": 0.5})
    assert no_url.status_code == 422 and no_url.json()["success"] == "false"
    assert "url" in no_url.json()["message"]
    missing = httpx.get(f"{gateway.url}/v1/analyses/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json()["errortype"] == "not_found"


def test_v1_analyze_accepts_a_multipart_upload(gateway: Gateway, photo_server: str) -> None:
    data = httpx.get(f"{photo_server}/chelsea.png").content
    answer = post(
        gateway,
        "/v1/analyze",
        files={"file": ("cat.png", data, "image/png")},
        data={"models": "resnet50,mtcnn", "threshold": "0.05", "max_results": "2"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["source"]["kind"] == "upload" and body["options"]["max_results"] == 2
    assert {m["name"] for m in body["models"]} == {"resnet50", "mtcnn"}
    bad = post(
        gateway,
        "/v1/analyze",
        files={"file": ("x.png", data, "image/png")},
        data={"models": "resnet50,cats"},
    )
    assert bad.status_code == 422 and "models" in bad.json()["message"]
    empty = post(gateway, "/v1/analyze", files={"file": ("x.png", b"", "image/png")})
    assert empty.status_code == 422 and "empty" in empty.json()["message"]


def test_misspelled_and_unknown_fields_are_refused_naming_them(
    gateway: Gateway, photo_server: str
) -> None:
    """A misspelled option would otherwise run every model at the default threshold."""
    url = f"{photo_server}/astronaut.png"
    data = httpx.get(url).content
    upload = {"file": ("a.png", data, "image/png")}
    for path in ("/v1/analyze", "/v1/annotate", "/v1/batch"):
        wrong = post(gateway, path, files=upload, data={"treshold": "0.5"})
        assert wrong.status_code == 422, (path, wrong.text)
        message = wrong.json()["message"]
        assert "'treshold'" in message and "did you mean 'threshold'" in message, message
        assert "models, threshold, max_results" in message
    keys = post(gateway, "/v1/analyze", json={"url": url, "model": ["mtcnn"]})
    assert keys.status_code == 422 and "'model'" in keys.json()["message"]
    assert "did you mean 'models'" in keys.json()["message"]
    batch = post(gateway, "/v1/batch", json={"urls": [url], "thresold": 0.1})
    assert batch.status_code == 422 and "'thresold'" in batch.json()["message"]
    nothing = post(gateway, "/v1/analyze", json={"url": url, "models": []})
    assert nothing.status_code == 422 and "models" in nothing.json()["message"]
    twice = post(gateway, "/v1/analyze", files=upload, data={"threshold": ["0.1", "0.2"]})
    assert twice.status_code == 422 and "'threshold' is given 2 times" in twice.json()["message"]
    # The seed's /api ignores other keys, as the Flask service did.
    seed = post(gateway, "/api", json={"url": url, "treshold": 0.5})
    assert seed.status_code == 200 and seed.json()["success"] == "true"


def test_repeated_models_fields_add_up_and_threshold_1_is_accepted(
    gateway: Gateway, photo_server: str
) -> None:
    data = httpx.get(f"{photo_server}/astronaut.png").content
    answer = post(
        gateway,
        "/v1/analyze",
        files={"file": ("a.png", data, "image/png")},
        data={"models": ["mtcnn", "resnet50,mtcnn"], "threshold": "1"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [m["name"] for m in body["models"]] == ["mtcnn", "resnet50"]
    assert body["options"]["threshold"] == 1.0
    over = post(gateway, "/v1/analyze", json={"url": "http://x/a.jpg", "threshold": 1.01})
    assert over.status_code == 422 and "threshold" in over.json()["message"]
    yolo = post(
        gateway,
        "/v1/analyze",
        json={"url": f"{photo_server}/astronaut.png", "models": ["yolov3"], "threshold": 1},
    )
    assert yolo.status_code == 200 and yolo.json()["results"]["yolov3"] == [], yolo.text
