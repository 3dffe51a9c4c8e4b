"""/healthz, /readyz and /v1/models (gateway/http/routes/health.py) on the real gateway, and the
operations port beside the API (/metrics, the readiness report)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from picmetric.triton_server import TritonServer
from tests.gateway.conftest import Gateway
from tests.utils.services import gateway_env, gateway_process, ops_url
from tests.utils.triton_stats import inference_count

pytestmark = pytest.mark.integration

PROBES = 12


def test_health_readiness_models_and_docs(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/readyz", timeout=60)
    assert ready.status_code == 200, ready.text
    report = httpx.get(f"{gateway.ops_url}/readyz", timeout=60)
    assert report.status_code == 200 and report.json()["canary_ok"] is True
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


@pytest.mark.parametrize("host", ["localhost", "anything.example"])
def test_public_readiness_says_ready_and_nothing_else(gateway: Gateway, host: str) -> None:
    """The API port's /readyz, to any client by any Host: ready or not, and the models on random
    weights (the tests' ResNet50 and YOLOv3), no replica or address; the operations port reports
    them, with every model's weights kind."""
    ready = httpx.get(f"{gateway.url}/readyz", headers={"Host": host}, timeout=60)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"ready": True, "random_weights": ["resnet50", "yolov3"]}
    report = httpx.get(f"{gateway.ops_url}/readyz", timeout=60).json()
    (replica,) = report["replicas"]
    assert replica["address"] and replica["address"] not in ready.text
    assert set(report) == {
        "ready",
        "triton_live",
        "models",
        "weights",
        "canary_ok",
        "proof",
        "replicas",
    }
    assert report["weights"] == {"resnet50": "random", "yolov3": "random", "mtcnn": "pretrained"}


def test_metrics_are_on_the_operations_port_only(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/metrics").status_code == 404
    # By a pod's address (Prometheus on Kubernetes) or a compose service's name; not by a name
    # with dots, as a page on a rebound DNS name would send.
    for host in ("10.1.2.3:8081", "[fd00::7]:8081", "gateway:8081", "localhost"):
        scraped = httpx.get(f"{gateway.ops_url}/metrics", headers={"Host": host})
        assert scraped.status_code == 200 and "picmetric_requests_total" in scraped.text, host
    for host in ("rebound.attacker.example", "rebound.attacker.example:8081", "[::1"):
        refused = httpx.get(f"{gateway.ops_url}/readyz", headers={"Host": host})
        assert refused.status_code == 400 and "replicas" not in refused.text, host
    # The operations port serves nothing of the API.
    assert httpx.get(f"{gateway.ops_url}/v1/models").status_code == 404


@pytest.fixture
def fresh_gateway(triton: TritonServer, model_repository: Path, tmp_path: Path) -> Iterator[str]:
    """A gateway of its own, whose first /readyz has no canary to trust yet."""
    env = gateway_env(triton, model_repository, f"sqlite:///{tmp_path / 'analyses.db'}")
    with gateway_process(env, tmp_path / "gateway.log") as url:
        yield url


def _concurrent_readiness(url: str) -> list[httpx.Response]:
    start = threading.Barrier(PROBES)
    answers: list[httpx.Response] = []

    def probe() -> None:
        start.wait()
        answers.append(httpx.get(f"{url}/readyz", timeout=120))

    threads = [threading.Thread(target=probe) for _ in range(PROBES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_concurrent_probes_run_one_canary(fresh_gateway: str, triton: TritonServer) -> None:
    """12 unauthenticated /readyz at once run one canary inference (counted in Triton's
    statistics), and the probes after it, within PICMETRIC_CANARY_MAX_AGE_S, run none."""
    before = inference_count(triton.grpc_url, "resnet50")
    answers = _concurrent_readiness(fresh_gateway)
    assert inference_count(triton.grpc_url, "resnet50") - before == 1
    assert [a.status_code for a in answers] == [200] * PROBES, [a.text for a in answers]
    for _ in range(PROBES):
        assert httpx.get(f"{fresh_gateway}/readyz", timeout=60).status_code == 200
    report = httpx.get(f"{ops_url(fresh_gateway)}/readyz", timeout=60).json()
    assert report["canary_ok"] is True
    assert inference_count(triton.grpc_url, "resnet50") == before + 1
