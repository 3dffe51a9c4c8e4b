"""The one place that decides which image URLs the gateway may fetch (SSRF guard)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from gateway.errors import ForbiddenURL, UnsupportedScheme, URLUnreachable

HTTP_SCHEMES = ("http", "https")
ALLOWED_SCHEMES = (*HTTP_SCHEMES, "s3")


def check_scheme(url: str) -> str:
    """The URL's scheme, or UnsupportedScheme."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsupportedScheme(
            f"URL scheme '{scheme or '(none)'}' is not supported; use http://, https:// or "
            "s3://bucket/key."
        )
    return scheme


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_global and not ip.is_multicast


async def check_http_url(url: str, allow_private: bool) -> None:
    """Refuse URLs whose host resolves to a loopback, private, link-local or reserved address,
    unless `allow_private` (tests and local demos)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in HTTP_SCHEMES:
        check_scheme(url)
        raise UnsupportedScheme(f"Redirect to a non-HTTP URL ({parts.scheme}://) is not followed.")
    if not parts.hostname:
        raise URLUnreachable(f"URL '{url}' has no host name.")
    if allow_private:
        return
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise URLUnreachable(f"Host '{parts.hostname}' could not be resolved.") from exc
    if not all(_is_public(str(info[4][0])) for info in infos):
        raise ForbiddenURL(
            f"Host '{parts.hostname}' resolves to a private or internal address; only public "
            "hosts can be fetched."
        )
