"""The gateway's Triton target in gRPC's own syntax (`host:port`, `ipv4:A:PORT,B:PORT`,
`ipv6:[A]:PORT,...`, `dns:///name:port`), parsed without a network, and a DNS name resolved."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class Target:
    """A parsed Triton target: fixed addresses (`host:port`), or a DNS name and port."""

    addresses: tuple[str, ...] = ()
    name: str | None = None
    port: int = 0


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _host_port(text: str, target: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"Triton target {target!r}: {text!r} is not HOST:PORT (e.g. triton:8001, "
            "ipv4:10.0.0.1:8001,10.0.0.2:8001 or dns:///triton-headless:8001)"
        )
    return host, int(port)


def parse_target(target: str) -> Target:
    """gRPC's target syntax, as far as the gateway supports it; ValueError says what is wrong.
    A plain `name:port` is a DNS name, resolved again like `dns:///name:port`, as gRPC does."""
    scheme, _, rest = target.partition(":")
    if scheme in ("ipv4", "ipv6"):
        version = 4 if scheme == "ipv4" else 6
        addresses = []
        for part in rest.split(","):
            host, port = _host_port(part, target)
            try:
                valid = ipaddress.ip_address(host).version == version
            except ValueError:
                valid = False
            if not valid:
                message = f"{host!r} is not an IPv{version} address"
                raise ValueError(f"Triton target {target!r}: {message}")
            addresses.append(_address(host, port))
        return Target(addresses=tuple(addresses))
    if scheme == "dns":
        name = rest
        if rest.startswith("//"):
            authority, _, name = rest[2:].partition("/")
            if authority:
                raise ValueError(
                    f"Triton target {target!r}: a DNS server of its own (dns://SERVER/...) is not "
                    "supported; write dns:///NAME:PORT"
                )
        host, port = _host_port(name, target)
        return Target(name=host, port=port)
    if "," in target or "/" in target:
        raise ValueError(
            f"Triton target {target!r}: several addresses need ipv4: or ipv6: in front; only "
            "HOST:PORT, ipv4:, ipv6: and dns: targets are supported"
        )
    host, port = _host_port(target, target)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return Target(name=host, port=port)
    return Target(addresses=(_address(host, port),))


async def resolve(name: str, port: int) -> list[str]:
    """The addresses `name` resolves to now, as `host:port`, sorted."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return sorted({_address(str(info[4][0]), port) for info in infos})
