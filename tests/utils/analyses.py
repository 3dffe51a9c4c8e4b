"""Rows of the results database for storage tests: a sample row, and counting what is stored."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import create_engine, text

from gateway.results import new_id
from gateway.store.storage import AnalysisRow
from gateway.tenancy import ANONYMOUS


def sample_row(analysis_id: str | None = None) -> AnalysisRow:
    """A complete analysis row (a new id unless one is given), the same every call otherwise."""
    return AnalysisRow(
        id=analysis_id or new_id(),
        created_at=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
        source_kind="url",
        source="https://example.com/cat.jpg",
        image_sha256="a" * 64,
        cache_key="b" * 64,
        width=640,
        height=480,
        models={"resnet50": {"version": "1"}},
        result={"results": {}, "options": {"threshold": 0.2, "max_results": 10}},
        timings={"fetch": 1.0},
        owner=ANONYMOUS,
    )


def count_analyses(database_url: str) -> int:
    """How many analyses the database at `database_url` holds."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM analyses")).scalar_one())
    finally:
        engine.dispose()
