"""Gateway fixtures: real photos over HTTP, moto's S3 server, PostgreSQL, and the gateway
itself under uvicorn, once per database kind."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import cv2
import httpx
import numpy as np
import pytest

from picmetric.triton_server import TritonServer
from tests.utils.http_server import serve_directory
from tests.utils.phone_formats import PhoneFiles
from tests.utils.postgres import postgres_server
from tests.utils.services import (
    S3_CREDENTIALS,
    gateway_env,
    gateway_process,
    ops_url,
    s3_server,
)

BUCKET = "picmetric-test-uploads"
# The answers' names that the front end reads (a contract: written out, not imported).
BOX_KEYS = {"x_min", "x_max", "y_min", "y_max"}
KEYPOINTS = {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
# Run the models whatever the results store holds (so a test's counts do not hang on others').
FRESH = {"Cache-Control": "no-cache"}
MAX_IMAGE_BYTES = 3_000_000
MAX_BATCH_BYTES = 8_000_000


@dataclass(frozen=True)
class Gateway:
    url: str
    database_url: str
    s3_url: str
    ops_url: str  # the operations port: /metrics, the readiness report


@pytest.fixture(autouse=True)
def trust_test_clients_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette's TestClient sends `Host: testserver`, which the gateway must be told of."""
    monkeypatch.setenv("PICMETRIC_ALLOWED_HOSTS", "testserver")


@pytest.fixture(scope="session")
def photo_server(
    photos: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Real photos as JPEG and PNG, a text file and an oversized file, over HTTP on loopback."""
    root = tmp_path_factory.mktemp("www")
    for name, rgb in photos.items():
        cv2.imwrite(str(root / f"{name}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (root / "notes.txt").write_text("not an image\n" * 100)
    (root / "huge.jpg").write_bytes(b"\xff\xd8\xff" + bytes(MAX_IMAGE_BYTES))
    with serve_directory(root) as (base, _):
        yield base


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    with s3_server() as url:
        client = boto3.client("s3", endpoint_url=url, **_boto_credentials())
        client.create_bucket(Bucket=BUCKET)
        yield url


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def s3_client(url: str):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=url, **_boto_credentials())


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def database_of(request: pytest.FixtureRequest, folder: Path) -> str:
    """The results database a fixture parametrized "sqlite" or "postgresql" asks for: a SQLite
    file in `folder`, or the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{folder / 'analyses.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def gateway(
    request: pytest.FixtureRequest,
    triton: TritonServer,
    model_repository: Path,
    s3_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """The gateway under uvicorn, talking to the real Triton, S3 and database."""
    folder = tmp_path_factory.mktemp(f"gateway-{request.param}")
    database_url = database_of(request, folder)
    env = gateway_env(
        triton,
        model_repository,
        database_url,
        s3_bucket=BUCKET,
        s3_endpoint_url=s3_url,
        allow_private_urls="true",
        max_image_bytes=str(MAX_IMAGE_BYTES),
        max_batch_bytes=str(MAX_BATCH_BYTES),
    )
    with gateway_process(env, folder / "gateway.log") as url:
        yield Gateway(url, database_url, s3_url, ops_url(url))


def post(gateway: Gateway, path: str, **kwargs: object) -> httpx.Response:
    """POST to the gateway, with time for an analysis on two busy cores."""
    return httpx.post(f"{gateway.url}{path}", timeout=120, **kwargs)  # type: ignore[arg-type]


def metric(gateway: Gateway, name: str, **labels: str) -> float:
    """The value of a metric with exactly these labels in the gateway's /metrics (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.compile(rf"^{re.escape(name)}(\{{(?P<labels>[^}}]*)\}})? (?P<value>\S+)$")
    for line in httpx.get(f"{gateway.ops_url}/metrics").text.splitlines():
        match = pattern.match(line)
        if match and ",".join(sorted((match["labels"] or "").split(","))) == wanted:
            return float(match["value"])
    return 0.0


@pytest.fixture(scope="session")
def phone_files() -> PhoneFiles:
    """The real-size photos as phones write them, each encoded once per session."""
    return PhoneFiles()
