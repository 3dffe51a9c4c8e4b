"""Getting image bytes: http(s) with httpx (streamed, capped, redirects checked hop by hop), and
s3://bucket/key through gateway.intake.s3. httpx's exceptions become ours here.

Every hop is pinned to the addresses the guard checked (no second DNS lookup, so no DNS
rebinding): the request goes to a URL whose host is the checked IP, while the `Host` header and
the `sni_hostname` request extension (httpx/httpcore's documented way to set the TLS server name)
carry the URL's own host name, so virtual hosting, SNI and certificate verification see the name,
not the address. Everything that pins is in the request itself, so the one `AsyncClient` a
process shares serves any number of concurrent fetches, each to its own checked address. (The
alternative, an httpcore network backend that maps the name to the address at connect time, is
not reachable through httpx 0.28's public API, and a backend never sees the request, so it would
need a context variable or a shared map.) If an address refuses the connection the
next checked one is tried, as a resolving client would.

httpcore pools connections by (scheme, address, port). Over http a pooled connection to a checked
address is as good as a new one. Over https it is not: a connection verified for one name must
not carry a request for another name on the same address, so https requests ask for
`Connection: close` and no TLS connection is ever reused.
"""

from __future__ import annotations

import asyncio
import re
import string
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from gateway.errors import (
    FetchError,
    FetchTimeout,
    ImageTooLarge,
    RemoteHTTPError,
    URLUnreachable,
)
from gateway.intake import local_uploads, urlguard
from gateway.intake import s3 as s3_objects
from gateway.settings import Settings
from gateway.tenancy import public_url

REDIRECT_CODES = (301, 302, 303, 307, 308)
USER_AGENT = "picmetric-gateway/0.1"


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    source: str  # the URL or s3:// pointer


def http_client(settings: Settings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(settings.fetch_timeout_s, connect=settings.fetch_connect_timeout_s)
    # identity: the bytes counted against the limit are the bytes that arrive (a few KB of
    # brotli can inflate to gigabytes)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, headers=headers)


async def fetch_http(client: httpx.AsyncClient, url: str, settings: Settings) -> FetchedImage:
    """GET `url`, following at most `max_redirects` redirects, each hop checked by the guard,
    all of it (DNS, every hop, the body) within `fetch_timeout_s`."""
    try:
        async with asyncio.timeout(settings.fetch_timeout_s):
            return await _fetch_hops(client, url, settings)
    except TimeoutError as exc:
        raise FetchTimeout(
            f"Fetching {url} took longer than {settings.fetch_timeout_s:g} s in all "
            "(PICMETRIC_FETCH_TIMEOUT_S)."
        ) from exc


async def _fetch_hops(client: httpx.AsyncClient, url: str, settings: Settings) -> FetchedImage:
    current = url
    for _ in range(settings.max_redirects + 1):
        shown = public_url(current)  # without credentials, for messages and logs
        addresses = await urlguard.check_http_url(current, settings.allow_private_urls)
        try:
            async with send_pinned(client, "GET", current, addresses) as response:
                if response.status_code in REDIRECT_CODES and "location" in response.headers:
                    current = urljoin(current, response.headers["location"])
                    continue
                if response.status_code >= 400:
                    raise RemoteHTTPError(f"Fetching {shown} answered HTTP {response.status_code}.")
                return FetchedImage(await _read_capped(response, settings.max_image_bytes), url)
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"Fetching {shown} timed out.") from exc
        except httpx.TransportError as exc:
            raise URLUnreachable(f"Could not connect to {urlsplit(shown).netloc}: {exc}") from exc
        except httpx.InvalidURL as exc:
            raise FetchError(f"{shown} is not a URL that can be fetched: {exc}") from exc
    raise FetchError(
        f"Too many redirects (more than {settings.max_redirects}) from {public_url(url)}."
    )


@asynccontextmanager
async def send_pinned(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    addresses: list[str],
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[httpx.Response]:
    """`method` `url` (the response streamed) over a connection to the first of `addresses`, the
    ones `urlguard.check_http_url` checked, that accepts one; no redirect is followed. The image
    fetch's GET and a job's webhook POST (gateway.jobs.webhooks)."""
    target = httpx.URL(url)
    headers = {**(headers or {}), "Host": target.netloc.decode("ascii")}
    if target.scheme == "https":
        headers["Connection"] = "close"
    extensions = {"sni_hostname": target.raw_host.decode("ascii")}

    def pinned(address: str) -> httpx.Request:
        return client.build_request(
            method,
            target.copy_with(host=address),
            content=content,
            headers=headers,
            extensions=extensions,
        )

    for address in addresses[:-1]:
        try:
            response = await client.send(pinned(address), stream=True)
            break
        except httpx.ConnectError:
            continue
    else:
        response = await client.send(pinned(addresses[-1]), stream=True)
    try:
        yield response
    finally:
        await response.aclose()


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The body as sent, never inflated: an encoded one is refused."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchError(
            f"{response.request.headers['host']} answered with Content-Encoding {encoding[:40]!r}"
            " though the gateway asked for none (identity); it does not inflate image bodies."
        )
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ImageTooLarge.over(limit)
    if response.is_stream_consumed:  # read already (httpx.MockTransport's responses are)
        if len(response.content) > limit:
            raise ImageTooLarge.over(limit)
        return response.content
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            raise ImageTooLarge.over(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch(
    client: httpx.AsyncClient, s3: Any, url: str, settings: Settings, owner: str
) -> FetchedImage:
    """The image at `url` for `owner` (an s3:// one only where that owner may read it, an
    upload:// one only the owner's)."""
    scheme = urlguard.check_scheme(url)
    if scheme == local_uploads.SCHEME:
        data = await local_uploads.read(settings.upload_dir, url, owner, settings.max_image_bytes)
        return FetchedImage(data, url)
    if scheme == "s3":
        data = await s3_objects.read(
            s3, url, settings.max_image_bytes, settings.s3_readable, owner, settings.s3_bucket
        )
        return FetchedImage(data, url)
    return await fetch_http(client, url, settings)


_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def _escapes_normalised(text: str) -> str:
    """RFC 3986 6.2.2.2: an escaped unreserved character unescaped, other escapes upper-case."""

    def one(match: re.Match[str]) -> str:
        char = chr(int(match[1], 16))
        return char if char in _UNRESERVED else f"%{match[1].upper()}"

    return re.sub(r"%([0-9A-Fa-f]{2})", one, text)


def _without_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4's remove_dot_segments, for a path that starts with '/'."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for n, segment in enumerate(segments):
        last = n == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def fetch_identity(url: str) -> str:
    """What `url` fetches, so that two spellings of one resource compare equal (RFC 3986's
    syntax-based normalisation): scheme and host in lower case, the default port left out, the
    fragment (never sent) dropped, escapes of unreserved characters undone, dot segments removed,
    an empty path as '/' (an empty query as none). The query stays (two queries are two
    resources) and so does userinfo (other credentials may fetch another answer). A URL this
    cannot parse is its own identity."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return url.split("#", 1)[0]  # s3:// keys are literal
    host = _escapes_normalised(parts.hostname).lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{_escapes_normalised(userinfo)}@{host}" if "@" in parts.netloc else host
    path = _without_dot_segments(_escapes_normalised(parts.path) or "/")
    return urlunsplit((scheme, netloc, path, _escapes_normalised(parts.query), ""))
