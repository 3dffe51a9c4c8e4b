"""Triton's admin API behind a header secret: the flags that lock it and the headers that open it.

Triton (2.51, checked on the local binary) takes `--http-restricted-api=<apis>:<header>=<value>`
and `--grpc-restricted-protocol=<apis>:<header>=<value>`. A request to a restricted API without
the header is refused: HTTP 403, gRPC UNAVAILABLE "This protocol is restricted". Over gRPC,
Triton expects the header with the prefix `triton-grpc-protocol-`. Inference, health, metadata,
model configuration and statistics stay open: the gateway, the probes and Prometheus need them,
and they change nothing.
"""

from __future__ import annotations

import secrets

# The header carrying the admin key (HTTP), and its name over gRPC.
ADMIN_HEADER = "picmetric-admin-key"
GRPC_ADMIN_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"
# Load/unload (loading a Python model runs its code), shared-memory regions, tracing, logging.
RESTRICTED_APIS = ("model-repository", "shared-memory", "trace", "logging")


def new_admin_key() -> str:
    """A fresh random key (32 bytes, URL-safe, so it fits in a command-line flag)."""
    return secrets.token_urlsafe(32)


def restricted_api_args(key: str) -> list[str]:
    """Triton's flags that lock RESTRICTED_APIS on both protocols behind `key`."""
    if not key or any(c in key for c in ":=, \t\n"):
        raise ValueError("Triton's admin key must be non-empty, without ':', '=', ',' or spaces")
    setting = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={key}"
    return [f"--http-restricted-api={setting}", f"--grpc-restricted-protocol={setting}"]


def grpc_admin_headers(key: str | None) -> dict[str, str] | None:
    """gRPC metadata for an admin call (None without a key: the call goes without it)."""
    return {GRPC_ADMIN_HEADER: key} if key else None


def http_admin_headers(key: str | None) -> dict[str, str] | None:
    """HTTP headers for an admin call (None without a key)."""
    return {ADMIN_HEADER: key} if key else None
