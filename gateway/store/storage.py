"""Stored analyses with SQLAlchemy: an SQLite file by default, PostgreSQL by URL. A row is
written only for a finished analysis, in one transaction, so a failure leaves nothing behind.
The schema is Alembic's (gateway.store.migrate): a change to `AnalysisRow` needs a new revision.

When the database goes away (PostgreSQL restarted, stopped, unreachable), every call fails within
a bounded time as `StorageError` (503 + Retry-After) and the engine heals by itself once it is
back: a pooled connection is pinged before use and the pool is emptied on a disconnect error, so
no dead connection is reused; connecting gives up after DATABASE_TIMEOUT_S."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    DateTime,
    Index,
    Integer,
    String,
    UniqueConstraint,
    case,
    create_engine,
    make_url,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from starlette.concurrency import run_in_threadpool

from gateway.errors import StorageError
from gateway.results import SOURCE_CHARS

# Longest wait to open a connection to PostgreSQL, and to take one from the pool when all are in
# use, in seconds: while the database is down a request fails after at most this long, not hangs.
DATABASE_TIMEOUT_S = 5
# The pool's size and overflow (SQLAlchemy's defaults): at most this many connections at once.
POOL_SIZE, POOL_OVERFLOW = 5, 10
T = TypeVar("T")


class Base(DeclarativeBase):
    pass


class AnalysisRow(Base):
    __tablename__ = "analyses"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    source_kind: Mapped[str] = mapped_column(String(16))  # url, s3, upload
    source: Mapped[str] = mapped_column(String(SOURCE_CHARS))
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    cache_key: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    models: Mapped[dict[str, Any]] = mapped_column(JSON)  # name -> version and weights
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Whose analysis this is (gateway.tenancy.owner_of): a hash of the API key, never the key.
    owner: Mapped[str] = mapped_column(String(64))


# A job's states; the last three are final.
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
# A job item's states: pending (not sent yet), queued (sent to the broker, not answered), and the
# final ones. An item reaches a final state once (gateway.store.jobs.JobStore.finish_item).
ITEM_FINAL = ("done", "failed", "skipped")
ERROR_CHARS = 1000  # the longest error message stored for a failed photo


class JobRow(Base):
    """A bulk job (gateway/jobs/): its source, options and counts; its photos are JobItemRows."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)  # gateway.tenancy.owner_of
    state: Mapped[str] = mapped_column(String(16), index=True)  # JOB_STATES
    source_kind: Mapped[str] = mapped_column(String(16))  # s3_prefix, urls, manifest
    source: Mapped[str] = mapped_column(String(SOURCE_CHARS))  # the prefix, manifest or "N URLs"
    options: Mapped[dict[str, Any]] = mapped_column(JSON)  # models, threshold, max_results
    webhook_url: Mapped[str | None] = mapped_column(String(SOURCE_CHARS), nullable=True)
    # Signing needs the secret itself (HMAC), so it is stored; it is answered only at submit.
    webhook_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    album: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # once finished
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The submit's span (W3C traceparent, 55 characters), which each photo's trace links to.
    traceparent: Mapped[str | None] = mapped_column(String(55), nullable=True)


class JobItemRow(Base):
    """One photo of a job, at its position in the job's source."""

    __tablename__ = "job_items"
    __table_args__ = (Index("ix_job_items_job_state", "job_id", "state"),)

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(SOURCE_CHARS))
    state: Mapped[str] = mapped_column(String(16))  # pending, queued, or ITEM_FINAL
    analysis_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    error_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(String(ERROR_CHARS), nullable=True)
    queued_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def connect_args(url: str) -> dict[str, Any]:
    """libpq's limits for PostgreSQL (psycopg2): connecting gives up after DATABASE_TIMEOUT_S,
    and TCP keepalives plus a user timeout notice a server that vanished without closing the
    connection (a host or network gone) instead of waiting minutes for TCP to give up."""
    if make_url(url).get_backend_name() != "postgresql":
        return {}
    return {
        "connect_timeout": DATABASE_TIMEOUT_S,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": DATABASE_TIMEOUT_S * 2 * 1000,  # ms unacknowledged before giving up
    }


def create_database_engine(url: str) -> Engine:
    """The engine every part of the gateway uses for `url`: connections pinged before each use
    (pre-ping), connect and pool waits bounded (DATABASE_TIMEOUT_S)."""
    if make_url(url).get_backend_name() == "sqlite":
        return create_engine(url, pool_pre_ping=True)
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
        pool_timeout=DATABASE_TIMEOUT_S,
        connect_args=connect_args(url),
    )


class AnalysisStore:
    """Read and write analyses off the event loop, in a database already migrated to the newest
    revision (gateway.store.migrate.upgrade_schema)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_database_engine(url)

    async def save(self, row: AnalysisRow) -> None:
        """Insert `row` in one transaction: on any failure it is rolled back and nothing stays.
        (When the server dies during COMMIT itself the outcome cannot be known by any client: the
        row may then exist, complete, though the request failed; a retry of the same photo and
        options finds it as a cached analysis.)"""

        def write() -> None:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                session.add(row)

        await self._call(write, "store the analysis (nothing was stored)")

    async def get(self, analysis_id: str, owner: str) -> AnalysisRow | None:
        """The analysis `analysis_id` if `owner` made it; another owner's is None, as a missing
        one, so an id says nothing about whether it exists."""

        def read() -> AnalysisRow | None:
            query = select(AnalysisRow).where(
                AnalysisRow.id == analysis_id, AnalysisRow.owner == owner
            )
            with Session(self.engine, expire_on_commit=False) as session:
                return session.scalars(query).first()

        return await self._call(read, "read the analysis")

    async def find_cached(
        self, image_sha256: str, cache_key: str, owner: str, source: str
    ) -> AnalysisRow | None:
        """`owner`'s analysis of the same bytes with the same models and options: its own of the
        same `source` first, then the newest. Never another owner's: what a key is answered must
        not tell that another key analysed the photo (gateway.tenancy)."""

        def read() -> AnalysisRow | None:
            same_source = case((AnalysisRow.source == source, 0), else_=1)
            query = (
                select(AnalysisRow)
                .where(AnalysisRow.image_sha256 == image_sha256)
                .where(AnalysisRow.cache_key == cache_key)
                .where(AnalysisRow.owner == owner)
                .order_by(same_source, AnalysisRow.created_at.desc())
                .limit(1)
            )
            with Session(self.engine, expire_on_commit=False) as session:
                return session.scalars(query).first()

        return await self._call(read, "look up earlier analyses of this image")

    async def _call(self, fn: Any, action: str) -> Any:
        return await call_database(fn, action)

    def dispose(self) -> None:
        self.engine.dispose()


async def call_database(fn: Callable[[], T], action: str) -> T:
    """`fn()` in a worker thread; SQLAlchemy's errors become StorageError saying what failed."""
    try:
        return await run_in_threadpool(fn)
    except SQLAlchemyError as exc:
        # A disconnect error has already invalidated the pool (SQLAlchemy does so for
        # is_disconnect), so the next call connects afresh once the server is back.
        raise StorageError(
            f"The results database is unavailable ({type(exc).__name__}), so the gateway "
            f"could not {action}. Retry in a few seconds."
        ) from exc
