"""POST /api: the seed Flask service's contract, for the existing front end; errors too are in
the seed's shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute

from gateway import rendering
from gateway.analysis import AnalysisRequest, analyze, options_or_defaults, url_kind
from gateway.deps import ADMIT_ANALYSIS, OwnerDep, ServicesDep, limit_rate, require_api_key
from gateway.errors import error_statuses
from gateway.schemas import SeedErrorBody, SeedRequest, SeedResponse


class SeedRoute(APIRoute):
    """A route whose errors the front end reads in the seed's shape."""

    render_error = staticmethod(rendering.seed_error)


router = APIRouter(
    tags=["seed"],
    dependencies=[Depends(require_api_key), Depends(limit_rate)],
    route_class=SeedRoute,
    responses={code: {"model": SeedErrorBody} for code in error_statuses()},
)


@router.post("/api", response_model=SeedResponse, dependencies=[ADMIT_ANALYSIS])
async def analyze_seed(body: SeedRequest, services: ServicesDep, owner: OwnerDep) -> dict[str, Any]:
    """Analyse the image at `url` with every ready model; values as strings, as the seed did."""
    request = AnalysisRequest(
        source_kind=url_kind(body.url),
        source=body.url,
        models=None,
        options=options_or_defaults(services.settings, body.threshold, None),
    )
    analysis = await analyze(request, services, owner)
    return rendering.seed_analysis(body.url, analysis.results)
