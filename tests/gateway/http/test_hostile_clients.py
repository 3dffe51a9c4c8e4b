"""Hostile clients against the real gateway under uvicorn (real Triton, loopback only, upstream
image servers in threads): each attack is refused with a clear status and `errortype` within a
bounded time, while /healthz answers within 0.5 s and normal analyses still succeed.
Issue 19's rows: bodies (1), fetches (2), browser-facing (7), error paths (9)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from picmetric.triton_server import TritonServer
from tests.gateway.conftest import FRESH
from tests.utils.hostile import (
    Upstream,
    connect,
    hostile_upstream,
    peak_rss,
    read_status,
    send_head,
    server_pid,
)
from tests.utils.services import gateway_env, gateway_process

pytestmark = pytest.mark.integration

KEY = "hostile-test-key-0123456789"
SLOTS = 2
MAX_IMAGE_BYTES = 3_000_000
BODY_TIMEOUT_S = 2.0
FETCH_TIMEOUT_S = 3.0
HUGE = 256 << 20  # a declared 256 MiB body


@dataclass(frozen=True)
class Target:
    url: str
    log: Path
    upstream_url: str
    upstream: Upstream


@pytest.fixture(scope="module")
def target(
    triton: TritonServer,
    model_repository: Path,
    photos: dict[str, np.ndarray],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Target]:
    """The gateway with an API key, 2 analysis slots and short limits, and a hostile upstream."""
    folder = tmp_path_factory.mktemp("hostile")
    photo = cv2.imencode(".jpg", cv2.cvtColor(photos["chelsea"], cv2.COLOR_RGB2BGR))[1].tobytes()
    env = gateway_env(
        triton,
        model_repository,
        f"sqlite:///{folder / 'analyses.db'}",
        api_keys=KEY,
        allow_private_urls="true",
        max_analyses_in_flight=str(SLOTS),
        max_image_bytes=str(MAX_IMAGE_BYTES),
        max_batch_bytes="8000000",
        body_timeout_s=str(BODY_TIMEOUT_S),
        fetch_timeout_s=str(FETCH_TIMEOUT_S),
        fetch_connect_timeout_s="1",
    )
    with hostile_upstream(photo) as (upstream_url, upstream):
        with gateway_process(env, folder / "gateway.log") as url:
            yield Target(url, folder / "gateway.log", upstream_url, upstream)


def _post(target: Target, path: str, timeout: float = 60, **kwargs: object) -> httpx.Response:
    headers = {"X-API-Key": KEY, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.post(f"{target.url}{path}", headers=headers, timeout=timeout, **kwargs)  # type: ignore[arg-type]


def assert_responsive(target: Target) -> None:
    started = time.perf_counter()
    assert httpx.get(f"{target.url}/healthz", timeout=0.5).status_code == 200
    assert time.perf_counter() - started < 0.5


def assert_analysis_succeeds(target: Target) -> None:
    """A normal analysis, which runs the model (not answered from the store)."""
    body = {"url": f"{target.upstream_url}/photo.jpg", "models": ["resnet50"]}
    answer = _post(target, "/v1/analyze", json=body, headers=FRESH)
    assert answer.status_code == 200, answer.text
    assert answer.json()["cached"] is False


def assert_still_serving(target: Target) -> None:
    assert_responsive(target)
    assert_analysis_succeeds(target)


# 1. Bodies


def test_slow_bodies_hold_no_slot_and_end_in_408(target: Target) -> None:
    """Three times as many slow uploads as slots: they hold no slot while their bodies trickle,
    and each is answered 408 request_timeout once PICMETRIC_BODY_TIMEOUT_S has passed."""
    sockets: list[socket.socket] = []
    try:
        for i in range(3 * SLOTS):
            sock = connect(target.url, timeout=BODY_TIMEOUT_S + 8)
            if i % 2:
                headers = {"Content-Type": "application/json", "Content-Length": "1000"}
                send_head(sock, target.url, "/api", {"X-API-Key": KEY, **headers})
                sock.sendall(b'{"u')
            else:
                headers = {
                    "Content-Type": "multipart/form-data; boundary=x",
                    "Content-Length": "100000",
                }
                send_head(sock, target.url, "/v1/analyze", {"X-API-Key": KEY, **headers})
                sock.sendall(b"--x")
            sockets.append(sock)
        started = time.monotonic()
        assert_still_serving(target)
        for sock in sockets:
            status, text = read_status(sock)
            assert status == 408 and "request_timeout" in text, text
            assert "PICMETRIC_BODY_TIMEOUT_S" in text
        assert time.monotonic() - started < BODY_TIMEOUT_S + 5
    finally:
        for sock in sockets:
            sock.close()
    assert_still_serving(target)


@pytest.mark.parametrize(
    ("path", "content_type", "errortype"),
    [
        ("/v1/analyze", "multipart/form-data; boundary=x", "image_too_large"),
        ("/v1/images", "multipart/form-data; boundary=x", "image_too_large"),
        ("/v1/annotate", "multipart/form-data; boundary=x", "image_too_large"),
        ("/v1/batch", "multipart/form-data; boundary=x", "image_too_large"),
        ("/v1/analyze", "application/json", "request_too_large"),
        ("/api", "application/json", "request_too_large"),
    ],
)
def test_declared_oversized_body_is_413_before_it_is_sent(
    target: Target, path: str, content_type: str, errortype: str
) -> None:
    with connect(target.url, timeout=5) as sock:
        headers = {"X-API-Key": KEY, "Content-Type": content_type, "Content-Length": str(HUGE)}
        send_head(sock, target.url, path, headers)
        status, text = read_status(sock)  # not one byte of the body was sent
    assert status == 413 and errortype in text, text
    assert_responsive(target)


@pytest.mark.parametrize("path", ["/api", "/v1/analyze", "/v1/batch"])
def test_api_key_is_checked_before_the_body_is_read(target: Target, path: str) -> None:
    with connect(target.url, timeout=5) as sock:
        headers = {"X-API-Key": "wrong", "Content-Type": "application/json", "Content-Length": "50"}
        send_head(sock, target.url, path, headers)
        status, text = read_status(sock)  # the body never comes
    assert status == 401 and "unauthorized" in text, text


def test_chunked_body_is_capped_while_it_streams(target: Target) -> None:
    """A chunked JSON body has no declared length: it is refused as it passes the JSON limit."""
    with connect(target.url, timeout=10) as sock:
        headers = {
            "X-API-Key": KEY,
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        }
        send_head(sock, target.url, "/v1/analyze", headers)
        chunk = b'{"url": "http://x/' + b"a" * 65000
        try:
            for _ in range(32):  # 2 MB
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                chunk = b"a" * 65000
            sock.sendall(b"0\r\n\r\n")
        except OSError:  # the gateway answered and closed before the end: as it should
            pass
        status, text = read_status(sock)
    assert status == 413 and "request_too_large" in text, text
    assert_still_serving(target)


# 2. Fetches


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_compressed_upstream_answer_is_refused_not_inflated(target: Target, encoding: str) -> None:
    """A few KB that inflate to 64 MiB: refused by its Content-Encoding, never inflated (the
    gateway's peak memory does not grow by an inflated chunk)."""
    path = f"/bomb-{encoding}.jpg"
    pid = server_pid(target.url)
    peak = peak_rss(pid)
    answer = _post(target, "/v1/analyze", json={"url": f"{target.upstream_url}{path}"})
    assert peak_rss(pid) - peak < 16 << 20
    assert answer.status_code == 400, answer.text
    assert answer.json()["errortype"] == "fetch_failed"
    assert "Content-Encoding" in answer.json()["message"]
    assert target.upstream.headers[path]["Accept-Encoding"] == "identity"
    assert_still_serving(target)


@pytest.mark.parametrize("path", ["/trickle.jpg", "/redirect-to-trickle.jpg"])
def test_trickling_upstream_ends_at_one_deadline_per_fetch(target: Target, path: str) -> None:
    """One byte every 0.3 s never trips a per-read timeout; the fetch's own deadline ends it."""
    answers: list[httpx.Response] = []
    attack = threading.Thread(
        target=lambda: answers.append(
            _post(
                target,
                "/v1/analyze",
                json={"url": f"{target.upstream_url}{path}"},
                timeout=FETCH_TIMEOUT_S + 10,
            )
        )
    )
    started = time.monotonic()
    attack.start()
    time.sleep(0.3)
    assert_responsive(target)
    attack.join()
    assert answers, "the attack's request failed"
    assert answers[0].status_code == 400 and answers[0].json()["errortype"] == "fetch_timeout"
    assert "PICMETRIC_FETCH_TIMEOUT_S" in answers[0].json()["message"]
    assert time.monotonic() - started < FETCH_TIMEOUT_S + 2
    assert_still_serving(target)


def test_batch_fetches_the_same_url_once(target: Target) -> None:
    path = "/photo-same.jpg"
    urls = [f"{target.upstream_url}{path}"] * 16
    answer = _post(target, "/v1/batch", json={"urls": urls, "models": ["resnet50"]})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [item["index"] for item in results] == list(range(16))
    assert all(item["analysis"] for item in results)
    assert target.upstream.hits[path] == 1


def test_batch_takes_slots_as_its_photos_start(target: Target) -> None:
    """While a slow fetch is in flight (it holds one of the key's fetches, no analysis slot), a
    batch of two still runs rather than being refused."""
    slow = threading.Thread(
        target=_post,
        args=(target, "/v1/analyze"),
        kwargs={"json": {"url": f"{target.upstream_url}/trickle.jpg"}},
    )
    slow.start()
    time.sleep(0.5)
    urls = [f"{target.upstream_url}/photo-{name}.jpg" for name in ("a", "b")]
    answer = _post(target, "/v1/batch", json={"urls": urls, "models": ["resnet50"]})
    slow.join()
    assert answer.status_code == 200, answer.text
    assert answer.json()["album"]["analysed"] == 2


# 7. Browser-facing


@pytest.mark.parametrize(("path", "key"), [("/v1/analyze", "errortype"), ("/api", "success")])
def test_json_is_taken_only_as_application_json(target: Target, path: str, key: str) -> None:
    """text/plain is what a page on any origin may post without asking the browser first."""
    body = f'{{"url": "{target.upstream_url}/photo.jpg"}}'
    answer = _post(target, path, content=body, headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415, answer.text
    assert answer.json()["errortype"] == "unsupported_media_type" and key in answer.json()
    assert "application/json" in answer.json()["message"]


def test_unknown_host_names_are_refused(target: Target) -> None:
    """DNS rebinding: a page on evil.example whose name now points at the gateway."""
    refused = httpx.get(f"{target.url}/v1/models", headers={"Host": "evil.example"}, timeout=10)
    assert refused.status_code == 400 and refused.json()["errortype"] == "untrusted_host"
    assert "PICMETRIC_ALLOWED_HOSTS" in refused.json()["message"]
    # probes and Prometheus reach these by address or service name
    probe = httpx.get(f"{target.url}/healthz", headers={"Host": "10.1.2.3:8080"}, timeout=10)
    assert probe.status_code == 200
    local = httpx.get(f"{target.url}/v1/models", headers={"Host": "localhost"}, timeout=10)
    assert local.status_code == 401  # through the host check, to the key check


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_have_a_policy_and_cannot_be_framed(target: Target, page: str) -> None:
    answer = httpx.get(f"{target.url}{page}", timeout=10)
    assert answer.status_code == 200
    policy = answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]


# 9. Error paths


def test_deeply_nested_json_is_422_not_a_500(target: Target) -> None:
    logged = len(target.log.read_text())
    answer = _post(
        target,
        "/v1/analyze",
        content=b"[" * 200_000,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422 and answer.json()["errortype"] == "invalid_request"
    assert "nested too deeply" in answer.json()["message"]
    assert "Traceback" not in target.log.read_text()[logged:]
    assert_still_serving(target)


def test_control_characters_cannot_forge_log_lines(target: Target) -> None:
    answer = httpx.get(
        f"{target.url}/v1/analyses/x%0AFORGED%20WARNING%20gateway:%20admin%20logged%20in",
        headers={"X-API-Key": KEY},
        timeout=10,
    )
    assert answer.status_code == 404
    lines = target.log.read_text().splitlines()
    assert not [line for line in lines if line.startswith("FORGED")]
    assert any("\\nFORGED WARNING" in line for line in lines)


def test_secrets_are_not_logged(target: Target) -> None:
    port = target.upstream_url.rsplit(":", 1)[1]
    url = f"http://alice:hunter2@127.0.0.1:{port}/missing.jpg?size=2&token=s3cr3tvalue"
    answer = _post(target, "/v1/analyze", json={"url": url})
    assert answer.status_code == 400 and answer.json()["errortype"] == "remote_http_error"
    log = target.log.read_text()
    assert "missing.jpg" in log, "the failure is logged"
    for secret in ("hunter2", "s3cr3tvalue", KEY):
        assert secret not in log


def test_lengths_are_checked_before_any_work(target: Target) -> None:
    """Longer than the database's 2,048-character column: 422 before any fetch or inference."""
    path = "/photo-long.jpg"
    long_url = f"{target.upstream_url}{path}?pad={'a' * 3000}"
    single = _post(target, "/v1/analyze", json={"url": long_url})
    assert single.status_code == 422 and "2048" in single.json()["message"], single.text
    batch = _post(
        target, "/v1/batch", json={"urls": [f"{target.upstream_url}/photo.jpg", long_url]}
    )
    assert batch.status_code == 422 and "urls.1" in batch.json()["message"], batch.text
    seed = _post(target, "/api", json={"url": long_url})
    assert seed.status_code == 422 and seed.json()["success"] == "false"
    assert target.upstream.hits[path] == 0
    name = "a" * 3000 + ".jpg"
    photo = target.upstream.photo
    upload = _post(target, "/v1/analyze", files={"file": (name, photo, "image/jpeg")})
    assert upload.status_code == 422 and "file name" in upload.json()["message"], upload.text
    assert_still_serving(target)
