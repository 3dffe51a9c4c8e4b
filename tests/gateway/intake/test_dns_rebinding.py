"""DNS rebinding against real loopback servers: a name server that changes its answer must not
steer a fetch anywhere the URL guard did not check, on any hop, over http or https.

The fake name server replaces `socket.getaddrinfo`, which both the guard (through asyncio) and
httpx (through anyio) would resolve with, so a second lookup by anybody would be seen and
answered with the rebound address. Requests go through a real httpx transport on a network where
only loopback answers: any other address is refused before a socket is opened, so nothing
outside this machine is contacted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import trustme

from gateway.errors import URLUnreachable
from gateway.intake.fetch import USER_AGENT, FetchedImage, fetch_http
from gateway.settings import Settings

IMAGE = b"\xff\xd8\xff\xe0 image bytes"
PUBLIC = "93.184.216.34"  # passes the guard; refused by LoopbackOnly, never contacted
ELSEWHERE = "192.0.2.1"  # TEST-NET-1: what a rebound name answers after its first lookup
REAL_GETADDRINFO = socket.getaddrinfo


@dataclass
class RebindingDNS:
    """Answers made-up names from a script: each lookup takes the next answer, the last one
    repeats. Other names resolve as usual. Records every lookup of a made-up name."""

    answers: dict[str, list[list[str]]]
    lookups: list[str] = field(default_factory=list)

    def getaddrinfo(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[tuple[Any, ...]]:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            return REAL_GETADDRINFO(host, port, family, type, proto, flags)
        self.lookups.append(name)
        script = self.answers[name]
        addresses = script.pop(0) if len(script) > 1 else script[0]
        return [_addrinfo(address, int(port or 0)) for address in addresses]


def _addrinfo(address: str, port: int) -> tuple[Any, ...]:
    if ipaddress.ip_address(address).version == 6:
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> RebindingDNS:
    fake = RebindingDNS({})
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    return fake


class LoopbackOnly(httpx.AsyncBaseTransport):
    """httpx's real transport, on a network where only loopback addresses answer. A host name is
    passed through (the transport would resolve it itself, through the fake DNS)."""

    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        self.inner = httpx.AsyncHTTPTransport(verify=verify)
        self.refused: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            outside = not ipaddress.ip_address(request.url.host).is_loopback
        except ValueError:
            outside = False
        if outside:
            self.refused.append(str(request.url))
            raise httpx.ConnectError(f"{request.url.host} is outside this test", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Server:
    port: int
    requests: list[dict[str, str]]  # path and headers of every request, in order
    server_names: list[str | None]  # the SNI of every TLS handshake


class _Handler(BaseHTTPRequestHandler):
    """GET /redirect/<url> answers 302 to <url>; any other path answers IMAGE."""

    requests: list[dict[str, str]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append({"path": self.path, **dict(self.headers.items())})
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/redirect/"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(IMAGE)))
        self.end_headers()
        self.wfile.write(IMAGE)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a refused TLS handshake is part of a test


@contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    """A real HTTP(S) server on 127.0.0.1 (only: 127.0.0.2 refuses), on a free port."""
    requests: list[dict[str, str]] = []
    server_names: list[str | None] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    server = _QuietServer(("127.0.0.1", 0), handler)
    if tls is not None:
        tls.sni_callback = lambda _socket, name, _context: server_names.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(server.server_address[1], requests, server_names)
    finally:
        server.shutdown()
        server.server_close()


def _fetch(url: str, allow_private: bool, transport: LoopbackOnly) -> FetchedImage:
    settings = Settings(
        allow_private_urls=allow_private, fetch_connect_timeout_s=2.0, max_redirects=2
    )

    async def run() -> FetchedImage:
        async with httpx.AsyncClient(
            transport=transport, headers={"User-Agent": USER_AGENT}, timeout=5.0
        ) as client:
            return await fetch_http(client, url, settings)

    return asyncio.run(run())


def test_fetch_never_resolves_a_rebinding_name_a_second_time(dns: RebindingDNS) -> None:
    """The name answers a public address to the guard, then loopback: the fetch goes to the
    public address it checked (refused here), and the loopback server sees nothing."""
    dns.answers["rebind.example"] = [[PUBLIC], ["127.0.0.1"]]
    transport = LoopbackOnly()
    with serve() as server:
        with pytest.raises(URLUnreachable, match="rebind.example"):
            _fetch(f"http://rebind.example:{server.port}/photo.jpg", False, transport)
    assert dns.lookups == ["rebind.example"]
    assert transport.refused == [f"http://{PUBLIC}:{server.port}/photo.jpg"]
    assert server.requests == []


def test_fetch_pins_an_allowed_private_name_and_sends_its_host_header(dns: RebindingDNS) -> None:
    dns.answers["images.example"] = [["127.0.0.1"], [ELSEWHERE]]
    with serve() as server:
        image = _fetch(f"http://images.example:{server.port}/photo.jpg", True, LoopbackOnly())
    assert image.data == IMAGE
    assert dns.lookups == ["images.example"]
    assert [request["Host"] for request in server.requests] == [f"images.example:{server.port}"]


def test_fetch_checks_and_pins_every_redirect_hop(dns: RebindingDNS) -> None:
    dns.answers["first.example"] = [["127.0.0.1"], [ELSEWHERE]]
    dns.answers["second.example"] = [["127.0.0.1"], [ELSEWHERE]]
    with serve() as server:
        second = f"http://second.example:{server.port}/photo.jpg"
        image = _fetch(
            f"http://first.example:{server.port}/redirect/{second}", True, LoopbackOnly()
        )
    assert image.data == IMAGE
    assert dns.lookups == ["first.example", "second.example"]
    assert [(request["path"], request["Host"]) for request in server.requests] == [
        (f"/redirect/{second}", f"first.example:{server.port}"),
        ("/photo.jpg", f"second.example:{server.port}"),
    ]


def test_fetch_tries_the_next_checked_address_when_one_refuses(dns: RebindingDNS) -> None:
    dns.answers["two.example"] = [["127.0.0.2", "127.0.0.1"], [ELSEWHERE]]
    with serve() as server:
        image = _fetch(f"http://two.example:{server.port}/photo.jpg", True, LoopbackOnly())
    assert image.data == IMAGE
    assert dns.lookups == ["two.example"]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@contextmanager
def serve_tls(ca: trustme.CA, name: str) -> Iterator[Server]:
    """An https server whose certificate names `name` only (not 127.0.0.1)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    with serve(context) as server:
        yield server


def _trusting(ca: trustme.CA) -> LoopbackOnly:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return LoopbackOnly(verify=context)


def test_fetch_over_https_verifies_the_certificate_for_the_host_name(
    dns: RebindingDNS, ca: trustme.CA
) -> None:
    """SNI and verification use the name although the connection goes to the pinned address;
    the TLS connection is not kept for reuse by another name."""
    dns.answers["secure.example"] = [["127.0.0.1"], [ELSEWHERE]]
    with serve_tls(ca, "secure.example") as server:
        image = _fetch(f"https://secure.example:{server.port}/photo.jpg", True, _trusting(ca))
    assert image.data == IMAGE
    assert dns.lookups == ["secure.example"]
    assert server.server_names == ["secure.example"]
    [request] = server.requests
    assert request["Host"] == f"secure.example:{server.port}"
    assert request["Connection"] == "close"


def test_fetch_over_https_refuses_a_certificate_for_another_name(
    dns: RebindingDNS, ca: trustme.CA
) -> None:
    dns.answers["impostor.example"] = [["127.0.0.1"]]
    with serve_tls(ca, "secure.example") as server:
        with pytest.raises(URLUnreachable, match="certificate verify failed"):
            _fetch(f"https://impostor.example:{server.port}/photo.jpg", True, _trusting(ca))
    assert server.server_names == ["impostor.example"]
    assert server.requests == []
