"""/healthz, /readyz and /v1/models (gateway/routes/health.py) on the real gateway."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.gateway.conftest import Gateway

pytestmark = pytest.mark.integration


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
