"""Fetching rules without a network: redirect and byte caps (httpx.MockTransport), the URL guard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway import urlguard
from gateway.errors import (
    FetchError,
    ForbiddenURL,
    ImageTooLarge,
    InvalidRequest,
    UnsupportedScheme,
)
from gateway.fetch import FetchedImage, fetch_http, split_s3_url
from gateway.settings import Settings

SETTINGS = Settings(allow_private_urls=True, max_image_bytes=1000, max_redirects=2)


def _fetch(handler, url: str = "http://images.test/a.jpg") -> FetchedImage:  # type: ignore[no-untyped-def]
    async def run() -> FetchedImage:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await fetch_http(client, url, SETTINGS)

    return asyncio.run(run())


def test_fetch_follows_redirects_up_to_the_cap() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        hop = int(request.url.params.get("hop", "0"))
        if hop < 2:
            return httpx.Response(302, headers={"Location": f"/a.jpg?hop={hop + 1}"})
        return httpx.Response(200, content=b"image")

    assert _fetch(handler).data == b"image"


def test_fetch_refuses_one_redirect_too_many() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "/again.jpg"})

    with pytest.raises(FetchError, match="Too many redirects"):
        _fetch(handler)


def test_fetch_refuses_a_redirect_to_another_scheme() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "file:///etc/passwd"})

    with pytest.raises(UnsupportedScheme):
        _fetch(handler)


def test_fetch_counts_bytes_while_reading_without_content_length() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(2):
            yield b"x" * 600

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())

    with pytest.raises(ImageTooLarge, match="1000 byte limit"):
        _fetch(handler)


def test_fetch_trusts_a_large_content_length_to_refuse_early() -> None:
    """The declared 5000 bytes are refused before the body is read (it would be small)."""
    read: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        read.append(b"x")
        yield b"x"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "5000"}, content=body())

    with pytest.raises(ImageTooLarge, match="1000 byte limit"):
        _fetch(handler)
    assert read == [], "the body was read although Content-Length was over the limit"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.jpg",
        "http://10.1.2.3/a.jpg",
        "http://[::1]/a.jpg",
        "http://169.254.169.254/latest/meta-data",
    ],
)
def test_url_guard_refuses_internal_addresses(url: str) -> None:
    with pytest.raises(ForbiddenURL, match="private or internal"):
        asyncio.run(urlguard.check_http_url(url, allow_private=False))


def test_url_guard_allows_internal_addresses_when_told() -> None:
    asyncio.run(urlguard.check_http_url("http://127.0.0.1/a.jpg", allow_private=True))


@pytest.mark.parametrize("url", ["ftp://host/a.jpg", "file:///etc/passwd", "a.jpg"])
def test_unsupported_schemes_are_named(url: str) -> None:
    with pytest.raises(UnsupportedScheme, match="http://, https:// or s3://"):
        urlguard.check_scheme(url)


def test_split_s3_url() -> None:
    assert split_s3_url("s3://bucket/a/b.jpg") == ("bucket", "a/b.jpg")
    with pytest.raises(InvalidRequest, match="must look like s3://bucket/key") as error:
        split_s3_url("s3://bucket/")
    assert error.value.errortype == "invalid_request"
