"""Liveness and readiness on the API port (`router`: ready or not, nothing more), and the
operations port's routes (`ops_router`: Prometheus metrics and the readiness report)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from gateway.errors import RETRY_AFTER
from gateway.http.deps import ServicesDep
from gateway.services import Services
from gateway.triton.catalog import Readiness

router = APIRouter(tags=["health"])
ops_router = APIRouter(tags=["operations"])


async def _readiness(services: Services) -> Readiness:
    return await services.catalog.readiness(services.triton, services.call)


def _answer(ready: bool, body: dict[str, object]) -> JSONResponse:
    headers = {} if ready else RETRY_AFTER
    return JSONResponse(body, status_code=200 if ready else 503, headers=headers)


@router.get("/healthz")
@ops_router.get("/healthz")
async def read_health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready"}})
async def read_readiness(services: ServicesDep) -> JSONResponse:
    """Ready while at least one Triton replica serves every model and a recent canary inference
    worked, and the models on random weights if any (their answers are noise); which replicas,
    and why not, only on the operations port."""
    readiness = await _readiness(services)
    body: dict[str, object] = {"ready": readiness.ready}
    if readiness.random_weights:
        body["random_weights"] = readiness.random_weights
    return _answer(readiness.ready, body)


@ops_router.get("/readyz")
async def read_readiness_report(services: ServicesDep) -> JSONResponse:
    """Readiness with each replica's address, models and the canary's answer."""
    readiness = await _readiness(services)
    return _answer(readiness.ready, readiness.report)


@ops_router.get("/metrics")
async def read_metrics(request: Request) -> Response:
    """Prometheus' text format, or OpenMetrics when the scraper asks for it (Prometheus does):
    only OpenMetrics carries the latency histograms' exemplars, the trace ids of traced analyses."""
    if "application/openmetrics-text" in request.headers.get("accept", ""):
        exposition = openmetrics.generate_latest(REGISTRY)
        return Response(exposition, media_type=openmetrics.CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
