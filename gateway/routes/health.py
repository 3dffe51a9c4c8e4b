"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

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
    """Ready while at least one Triton replica serves every model and a recent canary inference
    worked; the body reports each replica."""
    readiness = await services.catalog.readiness(services.triton, services.call)
    ready, body = readiness.ready, readiness.report
    headers = {} if ready else RETRY_AFTER
    return JSONResponse(body, status_code=200 if ready else 503, headers=headers)


@router.get("/metrics", include_in_schema=False)
async def read_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
