"""Hostile headers through the real gateway (uvicorn, Triton, SQLite, loopback): files whose header
understates what their decoder allocates, or whose header is itself costly to read, are answered
4xx within seconds with the gateway's resident memory bounded, while /healthz answers within a
second; a TIFF whose ICC tag has the wrong type is analysed, not a 500. The files:
tests/utils/hostile_headers.py (real encoders, then byte surgery)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from picmetric.triton_server import TritonServer
from tests.utils.hostile import server_pid
from tests.utils.hostile_headers import chained_tiff, heif_lies, png_text_bomb, tiff_with_icc_type
from tests.utils.services import gateway_env, gateway_process

pytestmark = pytest.mark.integration

# What one refused header may add to the gateway's resident memory (the upload itself is a few
# MB; the decodes these files asked for on main took 0.2 to 1 GB).
MOST_GROWTH = 64 << 20


@pytest.fixture(scope="module")
def gateway(
    triton: TritonServer, model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("gateway-headers")
    env = gateway_env(triton, model_repository, f"sqlite:///{folder / 'analyses.db'}")
    with gateway_process(env, folder / "gateway.log") as url:
        yield url


@pytest.fixture(scope="module")
def lies() -> dict[str, bytes]:
    return heif_lies()


def _kb(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) * 1024


def _analyze_watching(base: str, data: bytes, name: str) -> tuple[httpx.Response, float, float]:
    """The answer to analysing `data`, how long it took, and the slowest /healthz answer while
    it ran (/healthz asked every 0.1 s)."""
    answer: list[httpx.Response] = []

    def post() -> None:
        files = {"file": (name, data, "application/octet-stream")}
        form = {"models": "resnet50"}
        answer.append(httpx.post(f"{base}/v1/analyze", files=files, data=form, timeout=300))

    started = time.perf_counter()
    thread = threading.Thread(target=post)
    thread.start()
    slowest = 0.0
    while thread.is_alive():
        asked = time.perf_counter()
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        slowest = max(slowest, time.perf_counter() - asked)
        time.sleep(0.1)
    thread.join()
    return answer[0], time.perf_counter() - started, slowest


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("heic_clap", 413),  # 64x64 shown, 151 MP decoded
        ("avif_grid_ispe", 415),  # ispe 64x64 over a 67 MP grid
        ("avif_frame", 415),  # ispe 64x64 over a 67 MP AV1 frame
        ("tiff_pages", 415),  # 30,000 chained pages
        ("png_text", 415),  # 3,000 text chunks of 1 MiB each inflated
    ],
)
def test_a_hostile_header_is_refused_quickly_within_bounded_memory(
    gateway: str, lies: dict[str, bytes], name: str, status: int
) -> None:
    data = {**lies, "tiff_pages": chained_tiff(30_000), "png_text": png_text_bomb(3000)}[name]
    pid = server_pid(gateway)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := RSS now
    before = _kb(pid, "VmRSS")
    answer, elapsed, slowest_health = _analyze_watching(gateway, data, name)
    assert answer.status_code == status, answer.text[:300]
    body = answer.json()
    assert body["errortype"] == ("image_too_large" if status == 413 else "unsupported_image")
    assert "Traceback" not in body["message"]
    assert elapsed < 5, elapsed
    assert slowest_health < 1, slowest_health
    assert _kb(pid, "VmHWM") - before < MOST_GROWTH


@pytest.mark.parametrize("tag_type", [2, 4])  # ASCII, LONG
def test_a_tiff_whose_icc_tag_has_the_wrong_type_is_analysed(gateway: str, tag_type: int) -> None:
    """The profile is ignored (the pixels taken as sRGB); before, a 500 with a traceback."""
    answer, _, _ = _analyze_watching(gateway, tiff_with_icc_type(tag_type), "photo.tif")
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["image"]["width"] == 8
