"""POST /api: the seed Flask service's contract, for the existing front end."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from gateway.analysis import AnalysisRequest, analyze
from gateway.deps import ServicesDep, require_api_key
from gateway.formatting import seed_response
from gateway.routes.v1 import source_kind
from gateway.schemas import SeedRequest, SeedResponse

router = APIRouter(tags=["seed"], dependencies=[Depends(require_api_key)])


@router.post("/api", response_model=SeedResponse)
async def analyze_seed(body: SeedRequest, services: ServicesDep) -> dict[str, Any]:
    """Analyse the image at `url` with every ready model; values as strings, as the seed did."""
    request = AnalysisRequest(
        source_kind=source_kind(body.url),
        source=body.url,
        models=None,
        threshold=body.threshold,
        max_results=services.settings.default_max_results,
    )
    result = await analyze(request, services)
    return seed_response(body.url, result["results"])
