"""/docs and /redoc load everything from the gateway itself: no CDN, so they work offline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.main import create_app
from gateway.settings import Settings
from tests.utils.ports import free_port

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
