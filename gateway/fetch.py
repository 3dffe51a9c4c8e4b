"""Getting image bytes: http(s) with httpx (streamed, capped, redirects checked hop by hop) and
s3://bucket/key with boto3. Third-party exceptions become ours here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from botocore.exceptions import BotoCoreError, ClientError
from starlette.concurrency import run_in_threadpool

from gateway import urlguard
from gateway.errors import (
    FetchError,
    FetchTimeout,
    ImageTooLarge,
    InvalidRequest,
    RemoteHTTPError,
    URLUnreachable,
)
from gateway.settings import Settings

REDIRECT_CODES = (301, 302, 303, 307, 308)
USER_AGENT = "picmetric-gateway/0.1"


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    source: str  # the URL or s3:// pointer


def _too_large(limit: int) -> ImageTooLarge:
    return ImageTooLarge(f"Image is larger than the {limit} byte limit.")


def http_client(settings: Settings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(settings.fetch_timeout_s, connect=settings.fetch_connect_timeout_s)
    return httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
    )


async def fetch_http(client: httpx.AsyncClient, url: str, settings: Settings) -> FetchedImage:
    """GET `url`, following at most `max_redirects` redirects, each hop checked by the guard."""
    current = url
    for _ in range(settings.max_redirects + 1):
        await urlguard.check_http_url(current, settings.allow_private_urls)
        try:
            async with client.stream("GET", current) as response:
                if response.status_code in REDIRECT_CODES and "location" in response.headers:
                    current = urljoin(current, response.headers["location"])
                    continue
                if response.status_code >= 400:
                    raise RemoteHTTPError(
                        f"Fetching {current} answered HTTP {response.status_code}."
                    )
                return FetchedImage(await _read_capped(response, settings.max_image_bytes), url)
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"Fetching {current} timed out.") from exc
        except httpx.TransportError as exc:
            raise URLUnreachable(f"Could not connect to {urlsplit(current).netloc}: {exc}") from exc
    raise FetchError(f"Too many redirects (more than {settings.max_redirects}) from {url}.")


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def split_s3_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    key = parts.path.lstrip("/")
    if not parts.netloc or not key:
        raise InvalidRequest(f"S3 URL '{url}' must look like s3://bucket/key.")
    return parts.netloc, key


async def fetch_s3(s3: Any, url: str, settings: Settings) -> FetchedImage:
    """Read s3://bucket/key with boto3 (in a worker thread), capped at max_image_bytes."""
    bucket, key = split_s3_url(url)

    def read() -> bytes:
        response = s3.get_object(Bucket=bucket, Key=key)
        if response["ContentLength"] > settings.max_image_bytes:
            raise _too_large(settings.max_image_bytes)
        return bytes(response["Body"].read())

    try:
        return FetchedImage(await run_in_threadpool(read), url)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise FetchError(f"S3 could not return {url}: {code}.") from exc
    except BotoCoreError as exc:
        raise URLUnreachable(f"S3 is unreachable for {url}: {exc}") from exc


async def fetch(client: httpx.AsyncClient, s3: Any, url: str, settings: Settings) -> FetchedImage:
    if urlguard.check_scheme(url) == "s3":
        return await fetch_s3(s3, url, settings)
    return await fetch_http(client, url, settings)
