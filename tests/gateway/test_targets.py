"""The Triton target in gRPC's syntax: what is accepted, what each form means, and refusals that
say what to write instead."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from gateway.settings import Settings
from gateway.targets import Target, parse_target, resolve


@pytest.mark.parametrize(
    ("target", "parsed"),
    [
        ("127.0.0.1:8001", Target(addresses=("127.0.0.1:8001",))),
        ("[::1]:8001", Target(addresses=("[::1]:8001",))),
        ("triton:8001", Target(name="triton", port=8001)),
        (
            "ipv4:127.0.0.2:8001,127.0.0.3:9001",
            Target(addresses=("127.0.0.2:8001", "127.0.0.3:9001")),
        ),
        ("ipv6:[::1]:8001,[fd00::2]:8001", Target(addresses=("[::1]:8001", "[fd00::2]:8001"))),
        ("dns:///triton-headless.ns.svc:8001", Target(name="triton-headless.ns.svc", port=8001)),
        ("dns:triton:8001", Target(name="triton", port=8001)),
    ],
)
def test_parse_target_accepts_grpc_target_syntax(target: str, parsed: Target) -> None:
    assert parse_target(target) == parsed


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("triton", "is not HOST:PORT"),
        ("triton:http", "is not HOST:PORT"),
        ("ipv4:triton:8001", "is not an IPv4 address"),
        ("ipv4:127.0.0.2:8001,127.0.0.3", "is not HOST:PORT"),
        ("ipv6:127.0.0.1:8001", "is not an IPv6 address"),
        ("dns://8.8.8.8/triton:8001", "write dns:///NAME:PORT"),
        ("127.0.0.2:8001,127.0.0.3:8001", "need ipv4: or ipv6: in front"),
        ("unix:///run/triton.sock", "only HOST:PORT, ipv4:, ipv6: and dns:"),
    ],
)
def test_parse_target_refuses_what_it_cannot_balance(target: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_target(target)


def test_settings_refuse_a_bad_target_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICMETRIC_TRITON_GRPC_URL", "ipv4:triton:8001")
    with pytest.raises(ValidationError, match="is not an IPv4 address"):
        Settings()


def test_resolve_gives_sorted_addresses_with_the_port() -> None:
    assert asyncio.run(resolve("127.0.0.1", 8001)) == ["127.0.0.1:8001"]


def test_resolve_asks_the_system_resolver_for_a_name() -> None:
    """`dns:///localhost:8001` as the gateway resolves it: through getaddrinfo, /etc/hosts
    included (::1 as well where the host lists it)."""
    assert "127.0.0.1:8001" in asyncio.run(resolve("localhost", 8001))
