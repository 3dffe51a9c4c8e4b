"""One `POST /v1/analyze` reads top-down (issue 28): read as `benchmarks.request_path` reads it
(`tests/utils/request_path.py`: each concurrent strand whole where it starts), the path comes
back to a module it had left only where this allowlist says why. The shared vocabulary (types,
errors, spans, metrics, tenancy) is used by every step and comes back at will; a step module
that starts coming back (a stage handing work back and forth with another) fails here."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.main import create_app
from gateway.settings import Settings
from picmetric.triton_server import TritonServer
from tests.utils.request_path import collapsed, record, recording, returns

pytestmark = pytest.mark.integration

VOCABULARY = {"errors", "metrics", "results", "tenancy", "tracing"}
# module: (returns allowed, why)
ALLOWED_RETURNS: dict[str, tuple[int, str]] = {
    "http.limits": (
        2,
        "the edge's middleware runs around the request metric's (main.py), and its body limit "
        "is the `receive` that http.bodies reads the body through",
    ),
    "http.strict": (1, "the query parameters (the router's last dependency), then the body's keys"),
    "admission": (1, "the analysis slot first, the decode memory once the header is read"),
    "images.decode": (1, "the header read to size the memory reservation, then the decode"),
    "images.quality": (1, "its buffers counted in the reservation, then its figures measured"),
    "triton.inference": (
        2,
        "the models' needs (decode side, input memory) before the reservation, then their "
        "calls, each in its own task",
    ),
    "pipeline.analysis": (1, "the quality figures' task, beside the models"),
    "triton.replicas": (1, "the replica taken for the analysis, then told each call's outcome"),
    "store.storage": (1, "the store asked for an earlier answer, then the new one written"),
}


@pytest.mark.parametrize("cache", ["asked", "no-cache"])
def test_one_analysis_comes_back_to_a_step_only_where_the_allowlist_says(
    cache: str,
    triton: TritonServer,
    model_repository: Path,
    photos: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    settings = Settings(
        triton_grpc_url=triton.grpc_url,
        model_repository=model_repository,
        database_url=f"sqlite:///{tmp_path / 'analyses.db'}",
    )
    headers = {"Cache-Control": "no-cache"} if cache == "no-cache" else {}
    with recording() as entries, TestClient(create_app(settings)) as client:
        for name in ("chelsea", "astronaut"):  # the first: every model ready and warm
            jpeg = cv2.imencode(".jpg", cv2.cvtColor(photos[name], cv2.COLOR_RGB2BGR))[1]

            def analyze(jpeg: bytes = jpeg.tobytes()) -> None:
                files = {"file": ("photo.jpg", jpeg, "image/jpeg")}
                answer = client.post("/v1/analyze", files=files, headers=headers)
                assert answer.status_code == 200, answer.text
                assert not answer.json()["cached"]

            record(entries, analyze)
    path = [module.removeprefix("gateway.") for module in entries.as_read()]
    shown = " > ".join(collapsed(path))
    assert {"pipeline.analysis", "triton.inference", "store.storage"} <= set(path), shown
    came_back = {m: n for m, n in returns(path).items() if m not in VOCABULARY}
    over = {m: n for m, n in came_back.items() if n > ALLOWED_RETURNS.get(m, (0, ""))[0]}
    assert not over, f"{over} came back more often than allowed, in: {shown}"
    # A step whose return is no longer needed leaves the allowlist too.
    assert set(came_back) == set(ALLOWED_RETURNS) - ({"store.storage"} if headers else set())
