"""The one place that decides which image URLs the gateway may fetch (SSRF guard), and the one
place it resolves their host names.

`check_http_url` answers the addresses it checked; the fetcher connects to those and never asks
DNS again, so a name that answers a public address to the guard and a loopback one a moment later
(DNS rebinding) cannot steer the connection inside.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from gateway.errors import ForbiddenURL, UnsupportedScheme, URLUnreachable
from gateway.tenancy import public_url

HTTP_SCHEMES = ("http", "https")
# upload://: a kept upload on the gateway's own disk (gateway/intake/local_uploads.py)
ALLOWED_SCHEMES = (*HTTP_SCHEMES, "s3", "upload")
DEFAULT_PORTS = {"http": 80, "https": 443}


def check_scheme(url: str) -> str:
    """The URL's scheme, or UnsupportedScheme."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsupportedScheme(
            f"URL scheme '{scheme or '(none)'}' is not supported; use http://, https://, "
            "s3://bucket/key or a kept upload's upload://."
        )
    return scheme


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the system's order of preference, each once.

    The only DNS lookup of an image URL; tests replace it to play a rebinding name server.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# NAT64 (RFC 6052): the well-known prefix carries a public IPv4 address in its last 32 bits; the
# local-use prefix (RFC 8215) belongs to the operator's own network, so nothing in it is public.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
# IPv4-compatible addresses (deprecated, RFC 4291): ::a.b.c.d
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for: IPv4-mapped and -compatible, NAT64's
    well-known prefix, 6to4, and Teredo's server and client. A packet to such an address reaches
    the IPv4 host inside (through the kernel, a NAT64 gateway or a relay)."""
    inside = [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4 is not None]
    if ip.teredo is not None:
        inside.extend(ip.teredo)
    if ip in NAT64_WELL_KNOWN or ip in IPV4_COMPATIBLE:
        inside.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return inside


def _is_public(address: str) -> bool:
    """A global unicast address; an IPv6 address that embeds IPv4 is judged by the IPv4 inside,
    since Python's `is_global` calls `::127.0.0.1` or `64:ff9b::a9fe:a9fe` (the cloud metadata
    endpoint through NAT64) global."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL_USE or ip.is_site_local:
            return False
        inside = embedded_ipv4(ip)
        if inside:
            return all(v4.is_global and not v4.is_multicast for v4 in inside)
    return ip.is_global and not ip.is_multicast


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


async def check_http_url(url: str, allow_private: bool) -> list[str]:
    """The addresses the fetcher may connect to for `url`, in order of preference.

    Refuses URLs whose host resolves to a loopback, private, link-local, multicast or reserved
    address (every address it resolves to must be public), unless `allow_private` (tests and
    local demos). The host is resolved either way, so the fetch is pinned to what was checked.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in HTTP_SCHEMES:
        check_scheme(url)
        raise UnsupportedScheme(f"Redirect to a non-HTTP URL ({parts.scheme}://) is not followed.")
    if not parts.hostname:
        raise URLUnreachable(f"URL '{public_url(url)}' has no host name.")
    host = parts.hostname
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise URLUnreachable(f"URL '{public_url(url)}' has an invalid port.") from exc
    if _is_literal(host):
        addresses = [host]
    else:
        try:
            addresses = await resolve(host, port)
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
            raise URLUnreachable(f"Host '{host}' could not be resolved.") from exc
        if not addresses:
            raise URLUnreachable(f"Host '{host}' could not be resolved.")
    if not allow_private and not all(_is_public(address) for address in addresses):
        raise ForbiddenURL(
            f"Host '{host}' resolves to a private or internal address; only public hosts can "
            "be fetched, unless the operator sets PICMETRIC_ALLOW_PRIVATE_URLS=true (for a "
            "gateway whose users may reach its own network, such as a local server)."
        )
    return addresses
