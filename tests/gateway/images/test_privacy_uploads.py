"""Kept uploads end to end (a real gateway, Triton and moto's S3): the object kept in the bucket is
rebuilt without location and identifying metadata (ExifTool, the independent oracle, finds none),
keeps its orientation and its pixels (oracle: the gateway's own decode of the upload as sent), the
answer says whether the photo as sent carried a location, and nothing of the location reaches the
gateway's log or its database. With PICMETRIC_KEEP_UPLOAD_METADATA the object is the upload, byte
for byte."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import struct
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from gateway.images.decode import read_header
from gateway.tenancy import ANONYMOUS
from picmetric.triton_server import TritonServer
from tests.gateway.conftest import BUCKET, s3_client
from tests.gateway.images.test_privacy import IDENTIFYING_TAGS, assert_kept_clean
from tests.utils.exiftool import write_tags
from tests.utils.hostile_metadata import SECRETS, gps_exif
from tests.utils.services import gateway_process

pytestmark = pytest.mark.integration

MODELS = {"models": "resnet50,mtcnn", "threshold": "0.0"}
# What of the position could show in a log or a row: its numbers as Pillow and XMP write them.
LOCATION = [b"48.8584", b"2.2945", b"48,51", b"GPSLatitude", b"GPSInfo"]
TAKEN = "2024:05:01 12:30:00"
GPS_IFD = 0x8825


@pytest.fixture(scope="module")
def gateways(
    triton: TritonServer,
    model_repository: Path,
    s3_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[str, Path]]]:
    """Two gateways on SQLite, each with its log and database in its folder: the default
    (stripping) and one keeping the metadata."""
    with ExitStack() as running:
        started = {}
        for name, keep in (("strips", False), ("keeps", True)):
            folder = tmp_path_factory.mktemp(f"gateway-{name}")
            env = {
                "PICMETRIC_TRITON_GRPC_URL": triton.grpc_url,
                "PICMETRIC_TRITON_ADMIN_KEY": triton.admin_key,
                "PICMETRIC_MODEL_REPOSITORY": str(model_repository),
                "PICMETRIC_DATABASE_URL": f"sqlite:///{folder / 'analyses.db'}",
                "PICMETRIC_S3_BUCKET": BUCKET,
                "PICMETRIC_S3_ENDPOINT_URL": s3_url,
                "PICMETRIC_KEEP_UPLOAD_METADATA": str(keep).lower(),
            }
            url = running.enter_context(gateway_process(env, folder / "gateway.log"))
            started[name] = (url, folder)
        yield started


def _phone_jpeg(rgb: np.ndarray) -> bytes:
    """A phone's JPEG: turned by EXIF (stored landscape, shown portrait), with a position, names,
    a serial number and a creator's contact in EXIF, XMP and IPTC, written by ExifTool."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=92)
    return write_tags(out.getvalue(), *IDENTIFYING_TAGS, f"-DateTimeOriginal={TAKEN}")


def _kept(gateway_s3: str, pointer: str) -> bytes:
    key = pointer.removeprefix(f"s3://{BUCKET}/")
    return bytes(s3_client(gateway_s3).get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _upload(url: str, name: str, data: bytes) -> dict[str, Any]:
    answer = httpx.post(f"{url}/v1/images", files={"file": (name, data)}, data=MODELS, timeout=300)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_kept_upload_has_no_location_and_the_answer_says_it_had_one(
    gateways: dict[str, tuple[str, Path]], photos: dict[str, np.ndarray], s3_url: str
) -> None:
    url, folder = gateways["strips"]
    sent = _phone_jpeg(photos["chelsea"])
    body = _upload(url, "cat.jpg", sent)
    image = body["image"]
    assert image["has_location"] is True and image["taken_at"] == "2024-05-01T12:30:00"
    assert image["sha256"] == hashlib.sha256(sent).hexdigest()  # the upload as sent
    height, width = photos["chelsea"].shape[:2]
    assert (image["width"], image["height"]) == (height, width)  # EXIF orientation 6

    kept = _kept(s3_url, body["source"]["url"])
    assert body["source"]["url"].endswith(hashlib.sha256(kept).hexdigest())
    assert_kept_clean(sent, kept)
    assert read_header(kept).orientation == 6

    again = httpx.get(f"{url}/v1/analyses/{body['id']}").json()
    assert again["image"] == image and again["results"] == body["results"]

    # The kept object, analysed again: the same photo, upright, the same detections, no location.
    by_s3 = httpx.post(
        f"{url}/v1/analyze",
        json={"url": body["source"]["url"], "models": ["resnet50", "mtcnn"], "threshold": 0.0},
        timeout=300,
    )
    assert by_s3.status_code == 200, by_s3.text
    reread = by_s3.json()
    assert reread["image"]["has_location"] is False
    assert reread["image"]["taken_at"] is None  # the capture time is not kept either
    assert (reread["image"]["width"], reread["image"]["height"]) == (height, width)
    assert reread["results"] == body["results"]


def test_a_photo_without_a_location_says_so_and_is_kept_with_its_orientation(
    gateways: dict[str, tuple[str, Path]], photos: dict[str, np.ndarray], s3_url: str
) -> None:
    url, _ = gateways["strips"]
    exif = Image.Exif()
    exif[0x0112] = 3
    exif.get_ifd(0x8769)[0x9003] = "2023:12:24 18:00:00"
    out = io.BytesIO()
    Image.fromarray(photos["coffee"]).save(out, "JPEG", exif=exif)
    body = _upload(url, "coffee.jpg", out.getvalue())
    assert body["image"]["has_location"] is False
    assert body["image"]["taken_at"] == "2023-12-24T18:00:00"
    kept = _kept(s3_url, body["source"]["url"])
    assert_kept_clean(out.getvalue(), kept)
    assert read_header(kept).orientation == 3


def test_a_batch_keeps_each_upload_without_its_location(
    gateways: dict[str, tuple[str, Path]], photos: dict[str, np.ndarray], s3_url: str
) -> None:
    url, _ = gateways["strips"]
    located = _phone_jpeg(photos["rocket"])
    plain = io.BytesIO()
    Image.fromarray(photos["astronaut"]).save(plain, "PNG")
    files = [("file", ("rocket.jpg", located)), ("file", ("astronaut.png", plain.getvalue()))]
    answer = httpx.post(f"{url}/v1/batch", files=files, data=MODELS, timeout=300)
    assert answer.status_code == 200, answer.text
    analyses = [item["analysis"] for item in answer.json()["results"]]
    assert [a["image"]["has_location"] for a in analyses] == [True, False]
    assert_kept_clean(located, _kept(s3_url, analyses[0]["source"]["url"]))
    assert_kept_clean(plain.getvalue(), _kept(s3_url, analyses[1]["source"]["url"]))


def _tiff_pointing_outside(rgb: np.ndarray) -> bytes:
    """A TIFF that Pillow decodes, whose GPS IFD entry points past the end of the file: TIFF is
    not kept at all."""
    exif = Image.Exif()
    exif.load(b"Exif\x00\x00" + gps_exif())
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "TIFF", tiffinfo={**exif, GPS_IFD: exif.get_ifd(GPS_IFD)})
    data = bytearray(out.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for entry in range(ifd + 2, ifd + 2 + 12 * struct.unpack_from("<H", data, ifd)[0], 12):
        if struct.unpack_from("<H", data, entry)[0] == GPS_IFD:
            struct.pack_into("<I", data, entry + 8, 0x7FFFFFF0)
    return bytes(data)


def test_an_upload_whose_location_cannot_be_taken_out_is_never_kept(
    gateways: dict[str, tuple[str, Path]], photos: dict[str, np.ndarray]
) -> None:
    """/v1/images must keep it: 415. A batch keeps uploads only because a bucket is set: that
    photo is analysed and not kept (its source is the file name), the others as usual."""
    url, _ = gateways["strips"]
    broken = _tiff_pointing_outside(photos["coffee"])
    refused = httpx.post(f"{url}/v1/images", files={"file": ("b.tif", broken)}, timeout=300)
    assert refused.status_code == 415, refused.text
    assert refused.json()["errortype"] == "unsupported_image"
    assert "location" in refused.json()["message"]
    files = [("file", ("b.tif", broken)), ("file", ("c.jpg", _phone_jpeg(photos["chelsea"])))]
    answer = httpx.post(f"{url}/v1/batch", files=files, data=MODELS, timeout=300)
    assert answer.status_code == 200, answer.text
    sources = [item["analysis"]["source"] for item in answer.json()["results"]]
    assert sources[0] == {"kind": "upload", "url": "upload:b.tif"}
    assert sources[1]["url"].startswith(f"s3://{BUCKET}/uploads/")


def test_with_the_setting_the_upload_is_kept_byte_for_byte(
    gateways: dict[str, tuple[str, Path]], photos: dict[str, np.ndarray], s3_url: str
) -> None:
    url, _ = gateways["keeps"]
    sent = _phone_jpeg(photos["astronaut"])
    body = _upload(url, "astronaut.jpg", sent)
    assert body["image"]["has_location"] is True
    kept = f"uploads/{ANONYMOUS}/{hashlib.sha256(sent).hexdigest()}"
    assert body["source"]["url"] == f"s3://{BUCKET}/{kept}"
    assert _kept(s3_url, body["source"]["url"]) == sent


def test_nothing_of_the_location_reaches_the_log_or_the_database(
    gateways: dict[str, tuple[str, Path]], photos: dict[str, np.ndarray]
) -> None:
    """After located uploads (this test's own, and the earlier tests' if they ran), the stripping
    gateway's log and every row of its database hold none of the position's figures."""
    url, folder = gateways["strips"]
    _upload(url, "again.jpg", _phone_jpeg(photos["coffee"]))
    log = (folder / "gateway.log").read_bytes()
    assert b"/v1/images" in log  # the log is this gateway's, and it logged the request
    with sqlite3.connect(folder / "analyses.db") as database:
        rows = "\n".join(database.iterdump()).encode()
    assert b'"has_location": true' in rows or b'"has_location":true' in rows
    for secret in LOCATION + [secret.encode() for secret in SECRETS]:
        assert secret not in log and secret not in rows, secret
