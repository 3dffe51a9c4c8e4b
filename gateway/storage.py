"""Stored analyses with SQLAlchemy: an SQLite file by default, PostgreSQL by URL. A row is
written only for a finished analysis, in one transaction, so a failure leaves nothing behind.
The schema is Alembic's (gateway.migrate): a change to `AnalysisRow` needs a new revision."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from starlette.concurrency import run_in_threadpool

from gateway.errors import StorageError


class Base(DeclarativeBase):
    pass


class AnalysisRow(Base):
    __tablename__ = "analyses"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    source_kind: Mapped[str] = mapped_column(String(16))  # url, s3, upload
    source: Mapped[str] = mapped_column(String(2048))
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    cache_key: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    models: Mapped[dict[str, Any]] = mapped_column(JSON)  # name -> version and weights
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON)


def new_id() -> str:
    return str(uuid.uuid4())


class AnalysisStore:
    """Read and write analyses off the event loop, in a database already migrated to the newest
    revision (gateway.migrate.upgrade_schema)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, pool_pre_ping=True)

    async def save(self, row: AnalysisRow) -> None:
        def write() -> None:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                session.add(row)

        await self._call(write)

    async def get(self, analysis_id: str) -> AnalysisRow | None:
        def read() -> AnalysisRow | None:
            with Session(self.engine, expire_on_commit=False) as session:
                return session.get(AnalysisRow, analysis_id)

        return await self._call(read)

    async def find_cached(self, image_sha256: str, cache_key: str) -> AnalysisRow | None:
        def read() -> AnalysisRow | None:
            query = (
                select(AnalysisRow)
                .where(AnalysisRow.image_sha256 == image_sha256)
                .where(AnalysisRow.cache_key == cache_key)
                .order_by(AnalysisRow.created_at.desc())
                .limit(1)
            )
            with Session(self.engine, expire_on_commit=False) as session:
                return session.scalars(query).first()

        return await self._call(read)

    async def _call(self, fn: Any) -> Any:
        try:
            return await run_in_threadpool(fn)
        except SQLAlchemyError as exc:
            raise StorageError(f"The results database failed: {type(exc).__name__}.") from exc

    def dispose(self) -> None:
        self.engine.dispose()
