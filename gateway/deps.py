"""Shared FastAPI dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from gateway.errors import Unauthorized
from gateway.services import Services

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def require_api_key(
    services: ServicesDep, key: Annotated[str | None, Security(API_KEY_HEADER)]
) -> None:
    """When PICMETRIC_API_KEYS is set, every analysis request needs one of them in X-API-Key."""
    keys = services.settings.api_keys
    if keys and key not in keys:
        raise Unauthorized("Send a valid API key in the X-API-Key header.")
