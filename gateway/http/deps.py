"""Shared FastAPI dependencies."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from gateway.errors import Unauthorized
from gateway.jobs.queue import JobQueue
from gateway.ratelimit import key_id
from gateway.services import Services
from gateway.tenancy import ANONYMOUS, owner_of

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_job_queue(request: Request) -> JobQueue | None:
    """The process's job queue; None without Redis (PICMETRIC_REDIS_URL unset)."""
    return request.app.state.job_queue


JobQueueDep = Annotated[JobQueue | None, Depends(get_job_queue)]


def key_is_valid(key: str | None, keys: Sequence[str]) -> bool:
    """Whether `key` is one of `keys`, compared in constant time against every one of them, so
    the time taken says nothing about how much of a key was right or which key matched."""
    if key is None:
        return False
    given = key.encode()
    matched = False
    for candidate in keys:
        matched |= hmac.compare_digest(given, candidate.encode())
    return matched


def require_api_key(
    services: ServicesDep, key: Annotated[str | None, Security(API_KEY_HEADER)]
) -> None:
    """When PICMETRIC_API_KEYS is set, every analysis request needs one of them in X-API-Key."""
    keys = services.settings.api_keys
    if keys and not key_is_valid(key, keys):
        raise Unauthorized("Send a valid API key in the X-API-Key header.")


async def limit_rate(
    services: ServicesDep, request: Request, key: Annotated[str | None, Security(API_KEY_HEADER)]
) -> None:
    """Count the request against its key's rate limit (its address's, where no keys are set);
    429 rate_limited past it. Runs after require_api_key, so only valid keys are counted."""
    if services.rate_limiter is None:
        return
    if services.settings.api_keys and key is not None:
        identity = key_id(key)
    else:
        identity = f"address:{request.client.host if request.client else 'unknown'}"
    await services.rate_limiter.check(identity)


def request_owner(
    services: ServicesDep, key: Annotated[str | None, Security(API_KEY_HEADER)]
) -> str:
    """Whose analyses the request makes and reads: its API key's, or the anonymous owner's when
    it has no configured key (a gateway without keys has one owner)."""
    keys = services.settings.api_keys
    return owner_of(key) if keys and key_is_valid(key, keys) else ANONYMOUS


OwnerDep = Annotated[str, Depends(request_owner)]
