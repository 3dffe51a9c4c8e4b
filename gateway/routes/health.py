"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
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
    """Ready while at least one Triton replica serves every model and a recent canary inference
    worked; the body reports each replica."""
    catalog = services.catalog
    await catalog.refresh(services.triton)
    serving = [state for state in catalog.replicas if state.serves_all()]
    fresh = catalog.last_canary is not None and (
        time.monotonic() - catalog.last_canary < services.settings.canary_max_age_s
    )
    if serving and not fresh:
        # On every serving replica: a dead stub on one is found (and repaired) there.
        calls = [services.call(state.replica) for state in serving]
        fresh = any(await asyncio.gather(*(catalog.canary(call) for call in calls)))
    ready = bool(serving) and fresh
    body = {
        "ready": ready,
        "triton_live": catalog.live,
        "models": {name: state.ready for name, state in catalog.states.items()},
        "canary_ok": fresh,
        "replicas": [state.report() for state in catalog.replicas],
    }
    headers = {} if ready else RETRY_AFTER
    return JSONResponse(body, status_code=200 if ready else 503, headers=headers)


@router.get("/metrics", include_in_schema=False)
async def read_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
