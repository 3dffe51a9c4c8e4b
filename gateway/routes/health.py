"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.deps import ServicesDep
from gateway.errors import RETRY_AFTER

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def read_health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready"}})
async def read_readiness(services: ServicesDep) -> JSONResponse:
    """Ready when Triton is live, every model is ready and a recent canary inference worked."""
    catalog = services.catalog
    await catalog.refresh(services.triton)
    models = {name: state.ready for name, state in catalog.states.items()}
    fresh = catalog.last_canary is not None and (
        time.monotonic() - catalog.last_canary < services.settings.canary_max_age_s
    )
    if catalog.live and all(models.values()) and not fresh:
        fresh = await catalog.canary(services.call())
    ready = catalog.live and all(models.values()) and fresh
    body = {"ready": ready, "triton_live": catalog.live, "models": models, "canary_ok": fresh}
    headers = {} if ready else RETRY_AFTER
    return JSONResponse(body, status_code=200 if ready else 503, headers=headers)


@router.get("/metrics", include_in_schema=False)
async def read_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
