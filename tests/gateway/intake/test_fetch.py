"""Fetching rules without a network: redirect and byte caps (httpx.MockTransport), the URL guard,
each hop pinned to the address the guard checked (a fake resolver; DNS rebinding against real
loopback servers is in test_dns_rebinding.py)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from gateway.errors import (
    FetchError,
    FetchTimeout,
    ForbiddenURL,
    ImageTooLarge,
    InvalidRequest,
    UnsupportedScheme,
    URLUnreachable,
)
from gateway.intake import urlguard
from gateway.intake.fetch import FetchedImage, fetch_http, fetch_identity, http_client
from gateway.intake.s3 import split_s3_url
from gateway.settings import Settings

SETTINGS = Settings(allow_private_urls=True, max_image_bytes=1000, max_redirects=2)
PUBLIC = "93.184.216.34"  # never contacted: every request here goes to a MockTransport


@pytest.fixture(autouse=True)
def names(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The guard's resolver answers from this table (every other name fails to resolve)."""
    table = {"images.test": [PUBLIC]}

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    monkeypatch.setattr(urlguard, "resolve", resolve)
    return table


def _fetch(
    handler: Callable[[httpx.Request], httpx.Response],
    url: str = "http://images.test/a.jpg",
    settings: Settings = SETTINGS,
) -> FetchedImage:
    async def run() -> FetchedImage:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await fetch_http(client, url, settings)

    return asyncio.run(run())


def test_fetch_sends_each_hop_to_the_checked_address_under_its_host_name(
    names: dict[str, list[str]],
) -> None:
    names["cdn.test"] = ["2001:db8::7"]
    seen: list[tuple[str, str | None, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(
            (str(request.url), request.headers.get("host"), request.extensions.get("sni_hostname"))
        )
        if request.url.host == PUBLIC:
            return httpx.Response(302, headers={"Location": "https://cdn.test:8443/b.jpg"})
        return httpx.Response(200, content=b"image")

    assert _fetch(handler).data == b"image"
    assert seen == [
        (f"http://{PUBLIC}/a.jpg", "images.test", "images.test"),
        ("https://[2001:db8::7]:8443/b.jpg", "cdn.test:8443", "cdn.test"),
    ]


def test_fetch_checks_the_address_of_a_redirect_to_another_name(
    names: dict[str, list[str]],
) -> None:
    names["inside.test"] = ["10.0.0.5"]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://inside.test/secret"})

    with pytest.raises(
        ForbiddenURL, match="'inside.test' resolves to a private.*PICMETRIC_ALLOW_PRIVATE_URLS=true"
    ):
        _fetch(handler, settings=SETTINGS.model_copy(update={"allow_private_urls": False}))
    assert seen == [f"http://{PUBLIC}/a.jpg"]


def test_fetch_of_an_unknown_host_is_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be requested")

    with pytest.raises(URLUnreachable, match="'nowhere.test' could not be resolved"):
        _fetch(handler, url="http://nowhere.test/a.jpg")


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

    with pytest.raises(ImageTooLarge, match=r"1000 bytes limit \(PICMETRIC_MAX_IMAGE_BYTES\)"):
        _fetch(handler)


def test_fetch_trusts_a_large_content_length_to_refuse_early() -> None:
    """The declared 5000 bytes are refused before the body is read (it would be small)."""
    read: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        read.append(b"x")
        yield b"x"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "5000"}, content=body())

    with pytest.raises(ImageTooLarge, match=r"1000 bytes limit \(PICMETRIC_MAX_IMAGE_BYTES\)"):
        _fetch(handler)
    assert read == [], "the body was read although Content-Length was over the limit"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.jpg",
        "http://10.1.2.3/a.jpg",
        "http://[::1]/a.jpg",
        "http://169.254.169.254/latest/meta-data",
        "http://[fec0::1]/a.jpg",  # site-local (deprecated, still routed inside some networks)
        "http://[::ffff:127.0.0.1]/a.jpg",  # IPv4-mapped loopback
        "http://[::127.0.0.1]/a.jpg",  # IPv4-compatible loopback
        "http://[::a9fe:a9fe]/a.jpg",  # IPv4-compatible metadata endpoint
        "http://[64:ff9b::7f00:1]/a.jpg",  # NAT64 well-known prefix + loopback
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # NAT64 + the metadata endpoint
        "http://[64:ff9b:1::5db8:d822]/a.jpg",  # NAT64 local-use prefix, whatever is inside
        "http://[2002:7f00:1::]/a.jpg",  # 6to4 of 127.0.0.1
        "http://[2002:a01:203::1]/a.jpg",  # 6to4 of 10.1.2.3
        "http://[2001:0:4136:e378:8000:63bf:f5fe:fdfe]/a.jpg",  # Teredo, client 10.1.2.1
    ],
)
def test_url_guard_refuses_internal_addresses(url: str) -> None:
    with pytest.raises(ForbiddenURL, match="private or internal"):
        asyncio.run(urlguard.check_http_url(url, allow_private=False))


@pytest.mark.parametrize(
    ("address", "inside"),
    [
        ("::ffff:93.184.216.34", "93.184.216.34"),
        ("64:ff9b::5db8:d822", "93.184.216.34"),
        ("2002:5db8:d822::1", "93.184.216.34"),
    ],
)
def test_url_guard_judges_an_embedded_public_ipv4_by_itself(address: str, inside: str) -> None:
    """A public host reached through NAT64 or 6to4 stays reachable: the IPv4 inside decides."""
    assert urlguard.embedded_ipv4(ipaddress.IPv6Address(address)) == [ipaddress.IPv4Address(inside)]
    url = f"http://[{address}]/a.jpg"
    assert asyncio.run(urlguard.check_http_url(url, allow_private=False)) == [address]


def test_url_guard_allows_internal_addresses_when_told() -> None:
    addresses = asyncio.run(urlguard.check_http_url("http://127.0.0.1/a.jpg", allow_private=True))
    assert addresses == ["127.0.0.1"]


def test_url_guard_refuses_a_name_with_any_internal_address(names: dict[str, list[str]]) -> None:
    names["mixed.test"] = [PUBLIC, "127.0.0.1"]
    with pytest.raises(ForbiddenURL, match="'mixed.test' resolves to a private"):
        asyncio.run(urlguard.check_http_url("https://mixed.test/a.jpg", allow_private=False))


def test_url_guard_answers_every_checked_address_in_order(names: dict[str, list[str]]) -> None:
    names["twice.test"] = ["2606:2800:220:1:248:1893:25c8:1946", PUBLIC]
    addresses = asyncio.run(urlguard.check_http_url("http://twice.test/", allow_private=False))
    assert addresses == names["twice.test"]


@pytest.mark.parametrize("url", ["ftp://host/a.jpg", "file:///etc/passwd", "a.jpg"])
def test_unsupported_schemes_are_named(url: str) -> None:
    with pytest.raises(
        UnsupportedScheme, match="http://, https://, s3://bucket/key or a kept upload.s upload://"
    ):
        urlguard.check_scheme(url)


def test_split_s3_url() -> None:
    assert split_s3_url("s3://bucket/a/b.jpg") == ("bucket", "a/b.jpg")
    with pytest.raises(InvalidRequest, match="must look like s3://bucket/key") as error:
        split_s3_url("s3://bucket/")
    assert error.value.errortype == "invalid_request"


def test_fetch_has_one_deadline_for_all_its_hops() -> None:
    """Each hop is quick enough for a per-read timeout; together they pass the fetch's deadline."""
    settings = Settings(allow_private_urls=True, max_redirects=5, fetch_timeout_s=0.5)
    hops = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal hops
        hops += 1
        await asyncio.sleep(0.2)
        return httpx.Response(302, headers={"Location": f"/hop{hops}.jpg"})

    async def run() -> FetchedImage:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await fetch_http(client, "http://images.test/a.jpg", settings)

    with pytest.raises(FetchTimeout, match="PICMETRIC_FETCH_TIMEOUT_S") as refused:
        asyncio.run(run())
    assert refused.value.errortype == "fetch_timeout" and hops == 3


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
def test_fetch_refuses_an_encoded_body_rather_than_inflate_it(encoding: str) -> None:
    # a stream, so that httpx does not inflate it here on building the response
    body = httpx.ByteStream(b"\x1f\x8b" + bytes(100))
    answer = httpx.Response(200, headers={"Content-Encoding": encoding}, stream=body)
    with pytest.raises(FetchError, match="Content-Encoding") as refused:
        _fetch(lambda request: answer)
    assert refused.value.errortype == "fetch_failed"


def test_fetch_asks_for_unencoded_bodies() -> None:
    assert http_client(SETTINGS).headers["Accept-Encoding"] == "identity"


SPELLINGS = [
    "http://images.test/a/photo.jpg?size=2",
    "HTTP://Images.TEST/a/photo.jpg?size=2",
    "http://images.test:80/a/photo.jpg?size=2",
    "http://images.test/a/photo.jpg?size=2#part",
    "http://images.test/a/%70hoto.jpg?size=%32",
    "http://images.test/%61/./b/../photo.jpg?size=2",
    "http://images.test/x/../a/photo.jpg?size=2#",
]


def test_fetch_identity_is_one_for_every_spelling_of_a_url() -> None:
    """RFC 3986 6.2.2's syntax-based normalisation (case, default port, escapes, dot segments)
    plus the fragment, which is never sent."""
    assert {fetch_identity(url) for url in SPELLINGS} == {"http://images.test/a/photo.jpg?size=2"}
    assert fetch_identity("https://h:443") == fetch_identity("https://h/") == "https://h/"
    assert fetch_identity("http://[::1]:80/a/b/..") == "http://[::1]/a/"


def _spelled(url: str, transforms: tuple[str, ...]) -> str:
    """`url` (http(s)://host/path?query, lower case, no port) spelled another way."""
    scheme, rest = url.split("://", 1)
    host, _, path = rest.partition("/")
    path, _, query = path.partition("?")
    if "escape" in transforms:  # an unreserved character escaped, in lower-case hex
        path = path.replace("o", "%6f", 1)
    if "dot" in transforms:
        path = "./" + path
    if "dotdot" in transforms:
        path = "x/y/../../" + path
    if "port" in transforms:
        host += ":443" if scheme == "https" else ":80"
    if "host" in transforms:
        host = host.upper()
    if "scheme" in transforms:
        scheme = scheme.upper()
    spelled = f"{scheme}://{host}/{path}" + (f"?{query}" if query else "")
    return spelled + ("#frag" if "fragment" in transforms else "")


def test_fetch_identity_over_every_combination_of_spellings() -> None:
    """Every subset of the spellings, on URLs with and without a query: one identity per URL,
    and a URL with another query never shares it."""
    names = ("escape", "dot", "dotdot", "port", "host", "scheme", "fragment")
    subsets = [
        tuple(name for bit, name in enumerate(names) if mask >> bit & 1)
        for mask in range(1 << len(names))
    ]
    for url in ("http://photos.test/dir/photo.jpg", "https://cdn.test/o/p.png?w=1&h=2"):
        identity = fetch_identity(url)
        other_query = fetch_identity(url.split("?")[0] + "?w=3")
        for subset in subsets:
            spelled = _spelled(url, subset)
            assert fetch_identity(spelled) == identity, (spelled, subset)
            assert fetch_identity(_spelled(url.split("?")[0] + "?w=3", subset)) == other_query
        assert other_query != identity


@pytest.mark.parametrize(
    "other",
    [
        "http://images.test/a/photo.jpg?size=3",  # another query
        "http://images.test/a/photo.jpg",  # no query
        "http://images.test/a/Photo.jpg?size=2",  # paths are case-sensitive
        "http://images.test//a/photo.jpg?size=2",  # an empty segment is a segment
        "https://images.test/a/photo.jpg?size=2",
        "http://images.test:8080/a/photo.jpg?size=2",
        "http://user:pw@images.test/a/photo.jpg?size=2",
        "http://images.test/a/photo.jpg?size=2%2F",  # an escaped reserved character stays
    ],
)
def test_fetch_identity_keeps_what_makes_another_resource(other: str) -> None:
    assert fetch_identity(other) != fetch_identity(SPELLINGS[0])
