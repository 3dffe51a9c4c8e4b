"""PICMETRIC_DEFAULT_THRESHOLD applies to every route that lets the threshold out, the seed's
/api included (it used to be fixed at 0.2 there)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.main import create_app
from gateway.settings import Settings
from gateway.store.storage import AnalysisRow
from picmetric.triton_server import TritonServer

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("route", ["/api", "/v1/analyze"])
def test_default_threshold_setting_reaches_the_analysis(
    route: str, triton: TritonServer, model_repository: Path, photo_server: str, tmp_path: Path
) -> None:
    settings = Settings(
        triton_grpc_url=triton.grpc_url,
        model_repository=model_repository,
        database_url=f"sqlite:///{tmp_path / 'analyses.db'}",
        allow_private_urls=True,
        default_threshold=0.0375,
    )
    with TestClient(create_app(settings)) as client:
        answer = client.post(route, json={"url": f"{photo_server}/chelsea.jpg"})
        assert answer.status_code == 200, answer.text
        store = client.app.state.services.store  # type: ignore[attr-defined]
        with Session(store.engine) as session:
            rows = session.scalars(select(AnalysisRow)).all()
    assert len(rows) == 1
    assert rows[0].result["options"]["threshold"] == 0.0375
