"""/docs and /redoc load everything from the gateway itself: no CDN, so they work offline."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.images import ACCEPTED_FORMATS, UPLOAD_TYPES
from gateway.main import create_app
from gateway.settings import Settings
from tests.utils.ports import free_port
from tests.utils.services import gateway_process

KINDS = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "json"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The real app with no Triton behind it: the documentation needs none."""
    settings = Settings(
        triton_grpc_url=f"127.0.0.1:{free_port()}",
        database_url=f"sqlite:///{tmp_path / 'a.db'}",
        triton_timeout_s=2,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _referenced(html: str) -> list[str]:
    """Every URL the page loads: src=, href=, and Swagger UI's `url: '/openapi.json'`."""
    return re.findall(r"""(?:src|href)=["']([^"']+)["']|\burl: *["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_reference_only_local_assets_that_answer(client: TestClient, page: str) -> None:
    answer = client.get(page)
    assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
    html = answer.text
    assert "http://" not in html and "https://" not in html, "a page must not load from outside"
    urls = {a or b for a, b in _referenced(html)} | set(
        re.findall(r'<redoc spec-url="([^"]+)"', html)
    )
    assert any(u.endswith(".js") for u in urls) and "/openapi.json" in urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        kind = next(k for suffix, k in KINDS.items() if url.endswith(suffix))
        assert kind in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert len(asset.content) > 1000, url


def test_docs_swagger_ui_is_version_5_which_reads_openapi_3_1(client: TestClient) -> None:
    """FastAPI writes OpenAPI 3.1; Swagger UI 4 cannot show it."""
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    bundle = client.get("/docs/assets/swagger-ui-bundle.js").text
    assert re.search(r'"5\.\d+\.\d+"', bundle)


def test_docs_unknown_asset_is_a_plain_404(client: TestClient) -> None:
    answer = client.get("/docs/assets/nothing.js")
    assert answer.status_code == 404 and answer.json()["errortype"] == "not_found"


@pytest.mark.integration
def test_docs_swagger_ui_renders_in_headless_chromium_offline(tmp_path: Path) -> None:
    """The real gateway under uvicorn and Debian's chromium, on a machine with no internet:
    the DOM after Swagger UI ran shows the API's title and its analysis routes."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is missing: install Debian's chromium (./bootstrap.sh test does).")
    env = {
        "PICMETRIC_TRITON_GRPC_URL": f"127.0.0.1:{free_port()}",  # the docs need no Triton
        "PICMETRIC_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
    }
    with gateway_process(env, tmp_path / "gateway.log") as url:
        browser = subprocess.run(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",  # tests may run as root
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=15000",  # let the scripts run, then print the DOM
                "--dump-dom",
                f"{url}/docs",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    dom = browser.stdout
    assert 'class="swagger-ui' in dom and "Picmetric inference gateway" in dom
    for path in ("/api", "/v1/analyze", "/v1/images"):
        assert f'data-path="{path}"' in dom, f"Swagger UI did not render {path}"


def test_page_and_docs_name_the_accepted_formats(client: TestClient) -> None:
    """One list (gateway.images.ACCEPTED_FORMATS) in the page, its file picker and /docs."""
    page = client.get("/").text
    assert ACCEPTED_FORMATS in page
    accept = re.search(r'accept="([^"]+)"', page)
    assert accept is not None and accept.group(1) == UPLOAD_TYPES
    assert {".heic", ".heif", ".avif", "image/heic", "image/heif", "image/avif"} <= set(
        UPLOAD_TYPES.split(",")
    )
    upload = client.get("/openapi.json").json()["paths"]["/v1/analyze"]["post"]["requestBody"]
    form = upload["content"]["multipart/form-data"]["schema"]
    assert ACCEPTED_FORMATS in form["properties"]["file"]["description"]
    assert (
        ACCEPTED_FORMATS
        in upload["content"]["application/json"]["schema"]["properties"]["url"]["description"]
    )
