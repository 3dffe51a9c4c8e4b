"""Kept uploads on the gateway's own disk (gateway/intake/local_uploads.py), as `picmetric serve`
keeps them without an S3 bucket: /v1/images answers 201 with an upload:// pointer, the file kept
is rebuilt without location and identifying metadata (ExifTool, the independent oracle), and only
the key that kept it reads it back; with neither a bucket nor a folder, /v1/images names both
settings. Real gateway, Triton and SQLite."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.tenancy import owner_of
from picmetric.triton_server import TritonServer
from tests.gateway.images.test_privacy import assert_kept_clean
from tests.gateway.images.test_privacy_uploads import _phone_jpeg
from tests.utils.services import gateway_env, gateway_process

pytestmark = pytest.mark.integration

ALICE, BOB = "alice-key-0123456789", "bob-key-9876543210"


@pytest.fixture(scope="module")
def local_gateway(
    triton: TritonServer, model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A gateway with two keys, no bucket, and its uploads kept in a folder."""
    folder = tmp_path_factory.mktemp("local-uploads")
    env = gateway_env(
        triton,
        model_repository,
        f"sqlite:///{folder / 'analyses.db'}",
        api_keys=f"{ALICE},{BOB}",
        upload_dir=str(folder / "uploads"),
    )
    with gateway_process(env, folder / "gateway.log") as url:
        yield url, folder / "uploads"


def test_images_are_kept_on_disk_clean_and_read_back_by_their_key_only(
    local_gateway: tuple[str, Path], photos: dict[str, np.ndarray]
) -> None:
    url, uploads = local_gateway
    sent = _phone_jpeg(photos["chelsea"])
    answer = httpx.post(
        f"{url}/v1/images",
        files={"file": ("cat.jpg", sent)},
        data={"models": "mtcnn"},
        headers={"X-API-Key": ALICE},
        timeout=300,
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["image"]["has_location"] is True
    pointer = body["source"]["url"]
    assert body["source"]["kind"] == "upload" and pointer.startswith("upload://")
    (kept,) = (uploads / owner_of(ALICE)).iterdir()
    assert (
        pointer
        == f"upload://{kept.name}"
        == f"upload://{hashlib.sha256(kept.read_bytes()).hexdigest()}"
    )
    assert_kept_clean(sent, kept.read_bytes())

    again = httpx.post(
        f"{url}/v1/analyze",
        json={"url": pointer, "models": ["mtcnn"]},
        headers={"X-API-Key": ALICE},
        timeout=300,
    )
    assert again.status_code == 200, again.text
    assert again.json()["results"] == body["results"]
    assert again.json()["image"]["has_location"] is False  # the kept file has none

    for key, other in ((BOB, pointer), (ALICE, "upload://" + "0" * 64), (ALICE, "upload://../x")):
        refused = httpx.post(
            f"{url}/v1/analyze", json={"url": other}, headers={"X-API-Key": key}, timeout=60
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["errortype"] == "fetch_failed"
        assert refused.json()["message"].startswith("No kept upload")


def test_images_without_a_place_to_keep_them_name_both_settings(
    triton: TritonServer, model_repository: Path, tmp_path: Path
) -> None:
    env = gateway_env(triton, model_repository, f"sqlite:///{tmp_path / 'analyses.db'}")
    with gateway_process(env, tmp_path / "gateway.log") as url:
        answer = httpx.post(f"{url}/v1/images", files={"file": ("a.jpg", b"x")}, timeout=60)
    assert answer.status_code == 503, answer.text
    message = answer.json()["message"]
    assert "PICMETRIC_S3_BUCKET" in message and "PICMETRIC_UPLOAD_DIR" in message
