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
