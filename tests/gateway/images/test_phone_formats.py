"""Phone photos through a real gateway (uvicorn, Triton, SQLite, loopback), written here by real
encoders (tests/utils/phone_formats.py) from the real-size photos of tests/utils/real_photos.py:
the faces MTCNN finds in a HEIC, an AVIF or a JPEG with a Multi-Picture segment are those it finds
in the plain JPEG of the same pixels, for every orientation in the upright photo's pixels; an
over-limit HEIC is refused from its header; GIF and animated images are refused by name."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pillow_heif
import pytest
from PIL import Image

from gateway.images.decode import ACCEPTED_FORMATS
from picmetric.triton_server import TritonServer
from tests.utils.mtcnn_faces import iou
from tests.utils.phone_formats import PhoneFiles, encode
from tests.utils.real_photos import SIZES
from tests.utils.services import gateway_process

pytestmark = pytest.mark.integration

MAX_PIXELS = 13_000_000  # the gateway's PICMETRIC_MAX_IMAGE_PIXELS: 12 MP (4032x3024) fits
MIN_IOU = 0.9
TYPES = {"JPEG": "image/jpeg", "HEIF": "image/heic", "AVIF": "image/avif", "MPO": "image/jpeg"}


@pytest.fixture(scope="module")
def phone_gateway(
    triton: TritonServer, model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("gateway-phone")
    env = {
        "PICMETRIC_TRITON_GRPC_URL": triton.grpc_url,
        "PICMETRIC_MODEL_REPOSITORY": str(model_repository),
        "PICMETRIC_DATABASE_URL": f"sqlite:///{folder / 'analyses.db'}",
        "PICMETRIC_MAX_IMAGE_PIXELS": str(MAX_PIXELS),
    }
    with gateway_process(env, folder / "gateway.log") as url:
        yield url


def _analyze(base: str, data: bytes, format: str, models: str = "mtcnn") -> httpx.Response:
    name = f"photo.{format.lower()}"
    return httpx.post(
        f"{base}/v1/analyze",
        files={"file": (name, data, TYPES.get(format, "application/octet-stream"))},
        data={"models": models},
        timeout=120,
    )


def _faces(answer: dict[str, Any]) -> np.ndarray:
    boxes = [face["box"] for face in answer["results"]["mtcnn"]]
    return np.array([[b["x_min"], b["y_min"], b["x_max"], b["y_max"]] for b in boxes], float)


def _assert_same_faces(got: dict[str, Any], want: dict[str, Any], label: str) -> None:
    assert (got["image"]["width"], got["image"]["height"]) == (
        want["image"]["width"],
        want["image"]["height"],
    ), label
    found, expected = _faces(got), _faces(want)
    assert len(expected) >= 5, "the photo has six faces"
    assert len(found) == len(expected), f"{label}: {len(found)} faces, not {len(expected)}"
    best = iou(found, expected).max(axis=0)
    assert best.min() > MIN_IOU, f"{label}: IoU {best.round(3)}"


@pytest.mark.parametrize("size", list(SIZES))
def test_phone_formats_find_the_faces_of_the_plain_jpeg(
    phone_gateway: str, phone_files: PhoneFiles, size: str
) -> None:
    """Oracle: the faces found in the plain JPEG (OpenCV, quality 90) of the same pixels; the
    same count, each matched with IoU > 0.9."""
    plain = _analyze(phone_gateway, phone_files.file(size, "JPEG"), "JPEG")
    assert plain.status_code == 200, plain.text
    assert (plain.json()["image"]["width"], plain.json()["image"]["height"]) == SIZES[size]
    for format in ("HEIF", "AVIF", "MPO"):
        answer = _analyze(phone_gateway, phone_files.file(size, format), format)
        assert answer.status_code == 200, (format, answer.text)
        _assert_same_faces(answer.json(), plain.json(), f"{size} {format}")


@pytest.mark.parametrize("format", ("HEIF", "AVIF", "WEBP"))
def test_every_orientation_puts_the_faces_on_the_upright_photo(
    phone_gateway: str, phone_files: PhoneFiles, format: str
) -> None:
    """The 1 MP photo stored turned or mirrored each of the 8 ways (HEIF and AVIF: irot/imir
    boxes; WebP, lossless: EXIF): the answer is 1152x864 and its faces are those of the upright
    JPEG."""
    plain = _analyze(phone_gateway, phone_files.file("1mp", "JPEG"), "JPEG").json()
    for orientation in range(1, 9):
        data = phone_files.file("1mp", format, orientation)
        answer = _analyze(phone_gateway, data, format)
        assert answer.status_code == 200, (orientation, answer.text)
        _assert_same_faces(answer.json(), plain, f"{format} orientation {orientation}")


def test_an_over_limit_heic_is_refused_from_its_header(phone_gateway: str) -> None:
    """A 4096x3328 HEIC (13.6 MP in 56 tiles, 15 KB of flat grey) over the gateway's 13 MP: 413
    naming the setting, answered faster than the 12 MP HEIC decodes (about half a second)."""
    pillow_heif.options.GRID_TILE_SIZE = 512
    try:
        data = encode(np.full((3328, 4096, 3), 128, np.uint8), "HEIF")
    finally:
        pillow_heif.options.GRID_TILE_SIZE = 0
    started = time.perf_counter()
    answer = _analyze(phone_gateway, data, "HEIF")
    elapsed = time.perf_counter() - started
    assert answer.status_code == 413, answer.text
    assert "4096x3328" in answer.json()["message"]
    assert "PICMETRIC_MAX_IMAGE_PIXELS" in answer.json()["message"]
    assert elapsed < 0.3, elapsed


@pytest.mark.parametrize("format", ("GIF", "WEBP", "PNG"))
def test_gif_and_animated_images_are_refused_naming_what_is_accepted(
    phone_gateway: str, format: str
) -> None:
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("red", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=format, save_all=True, append_images=frames[1:])
    answer = _analyze(phone_gateway, buffer.getvalue(), format)
    assert answer.status_code == 415, answer.text
    assert answer.json()["errortype"] == "unsupported_image"
    assert ACCEPTED_FORMATS in answer.json()["message"]
