"""POST /api: the seed Flask service's contract, for the existing front end; errors too are in
the seed's shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute

from gateway.errors import error_statuses
from gateway.http import bodies, rendering
from gateway.http.deps import OwnerDep, ServicesDep, limit_rate, require_api_key
from gateway.http.schemas import SeedErrorBody, SeedRequest, SeedResponse
from gateway.pipeline.analysis import analyze
from gateway.pipeline.request import requested


class SeedRoute(APIRoute):
    """A route whose errors the front end reads in the seed's shape."""

    render_error = staticmethod(rendering.seed_error)


router = APIRouter(
    tags=["seed"],
    dependencies=[Depends(require_api_key), Depends(limit_rate)],
    route_class=SeedRoute,
    responses={code: {"model": SeedErrorBody} for code in error_statuses()},
)


# The body is read in the route, after the API key check (FastAPI reads a declared body first).
_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SeedRequest.model_json_schema()}},
    }
}


@router.post("/api", response_model=SeedResponse, openapi_extra=_BODY)
async def analyze_seed(
    http_request: Request, services: ServicesDep, owner: OwnerDep
) -> dict[str, Any]:
    """Analyse the image at `url` with every ready model; values as strings, as the seed did."""
    body = await bodies.seed_request(http_request)
    settings = services.settings
    request = requested(settings, body.url, None, body.threshold, None, body.min_face_size)
    analysis = await analyze(request, services, owner)
    return rendering.seed_analysis(body.url, analysis.results)
