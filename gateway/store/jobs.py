"""Bulk jobs and their photos in the results database (the `jobs` and `job_items` tables of
gateway.store.storage), off the event loop; what gateway/jobs/ asks of them.

Exactly once: a photo (`JobItemRow`) reaches a final state (done, failed, skipped) in one
conditional UPDATE (`finish_item`: ... WHERE state NOT IN the final ones), whose row count says
whether this call answered it; the job's counts move in the same transaction, and the job turns
done in one conditional UPDATE too, so one worker only sees it finish. A message delivered twice
(a worker killed after its work, a broker restored from its log) therefore changes nothing the
second time. Every read a client makes is scoped to its owner (gateway.tenancy)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.engine import CursorResult, Engine, Result
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.store.storage import (
    ERROR_CHARS,
    ITEM_FINAL,
    AnalysisRow,
    JobItemRow,
    JobRow,
    call_database,
)

OPEN_STATES = ("queued", "running")  # a job that still has photos to answer


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Started:
    """A photo a worker is to answer now, and its job."""

    job: JobRow
    item: JobItemRow


@dataclass(frozen=True)
class Finished:
    """What `finish_item` did: whether this call answered the photo (False: it already had its
    answer), whether every photo of the job is answered now (the job is finished by
    `finish_job`), and the job after it."""

    answered: bool
    job_complete: bool
    job: JobRow


class JobStore:
    """The jobs tables, on the results database's engine (gateway.store.storage)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    async def create(self, job: JobRow, sources: Sequence[str]) -> tuple[JobRow, bool]:
        """Insert `job` and one pending item per source, in one transaction; (the job, True).
        When the owner already has a job under the same idempotency key: (that job, False)."""

        def write() -> tuple[JobRow, bool]:
            try:
                with self._session() as session, session.begin():
                    session.add(job)
                    session.flush()
                    if sources:
                        session.execute(
                            JobItemRow.__table__.insert(),  # type: ignore[attr-defined]
                            [
                                {"job_id": job.id, "position": i, "source": s, "state": "pending"}
                                for i, s in enumerate(sources)
                            ],
                        )
                return job, True
            except IntegrityError:
                if job.idempotency_key is None:
                    raise
                existing = self._by_key(job.owner, job.idempotency_key)
                if existing is None:
                    raise
                return existing, False

        return await call_database(write, "store the job (nothing was stored)")

    def _by_key(self, owner: str, key: str) -> JobRow | None:
        query = select(JobRow).where(JobRow.owner == owner, JobRow.idempotency_key == key)
        with self._session() as session:
            return session.scalars(query).first()

    async def by_idempotency_key(self, owner: str, key: str) -> JobRow | None:
        """`owner`'s job submitted with Idempotency-Key `key`."""
        return await call_database(lambda: self._by_key(owner, key), "look up the job")

    async def get(self, job_id: str, owner: str | None) -> JobRow | None:
        """The job if `owner` made it (None: whoever did, for the workers); another owner's is
        None, as a missing one."""

        def read() -> JobRow | None:
            query = select(JobRow).where(JobRow.id == job_id)
            if owner is not None:
                query = query.where(JobRow.owner == owner)
            with self._session() as session:
                return session.scalars(query).first()

        return await call_database(read, "read the job")

    async def list_jobs(self, owner: str, offset: int, limit: int) -> list[JobRow]:
        """`owner`'s jobs, newest first."""

        def read() -> list[JobRow]:
            query = (
                select(JobRow)
                .where(JobRow.owner == owner)
                .order_by(JobRow.created_at.desc(), JobRow.id)
                .offset(offset)
                .limit(limit)
            )
            with self._session() as session:
                return list(session.scalars(query))

        return await call_database(read, "list the jobs")

    async def load(self, owner: str) -> tuple[int, int]:
        """`owner`'s open jobs (queued or running) and the photos they have left to answer."""

        def read() -> tuple[int, int]:
            left = JobRow.total - JobRow.done - JobRow.failed - JobRow.skipped
            query = select(func.count(), func.coalesce(func.sum(left), 0)).where(
                JobRow.owner == owner, JobRow.state.in_(OPEN_STATES)
            )
            with self._session() as session:
                jobs, photos = session.execute(query).one()
                return int(jobs), int(photos)

        return await call_database(read, "count the key's jobs")

    async def open_jobs(self) -> list[JobRow]:
        """Every job with photos left (for the workers' sweep)."""

        def read() -> list[JobRow]:
            with self._session() as session:
                query = select(JobRow).where(JobRow.state.in_(OPEN_STATES))
                return list(session.scalars(query))

        return await call_database(read, "list the open jobs")

    async def claim(self, job_id: str, window: int, stale_before: dt.datetime | None) -> list[int]:
        """Positions of the job's photos to send to the queue now: its pending ones, first
        first, until `window` are queued; and those queued before `stale_before` (sent by a worker
        that died before sending, or lost with a broker), queued again. Each position is claimed
        by one caller: the job's row is locked (PostgreSQL; SQLite writes one at a time) and each
        item moves only from the state it was read in."""

        def write() -> list[int]:
            with self._session() as session, session.begin():
                job = session.scalars(
                    select(JobRow).where(JobRow.id == job_id).with_for_update()
                ).first()
                if job is None or job.state not in OPEN_STATES:
                    return []
                moment = now()
                claimed: list[int] = []
                if stale_before is not None:
                    stale = session.scalars(
                        select(JobItemRow.position).where(
                            JobItemRow.job_id == job_id,
                            JobItemRow.state == "queued",
                            JobItemRow.queued_at < stale_before,
                        )
                    ).all()
                    for position in stale:
                        older = JobItemRow.queued_at < stale_before
                        claimed += _move(session, job_id, position, "queued", moment, older)
                queued = session.scalar(
                    select(func.count()).where(
                        JobItemRow.job_id == job_id, JobItemRow.state == "queued"
                    )
                )
                room = window - int(queued or 0)
                if room > 0:
                    pending = session.scalars(
                        select(JobItemRow.position)
                        .where(JobItemRow.job_id == job_id, JobItemRow.state == "pending")
                        .order_by(JobItemRow.position)
                        .limit(room)
                    ).all()
                    for position in pending:
                        claimed += _move(session, job_id, position, "pending", moment)
                return claimed

        return await call_database(write, "queue the job's photos")

    async def start_item(self, job_id: str, position: int) -> Started | None:
        """The photo and its job when the photo is still to be answered and its job open (None:
        answered already, or the job was cancelled); its job turns running, and the photo's
        `queued_at` is now: a sweep sends it again only if it stays unanswered that long."""

        def write() -> Started | None:
            with self._session() as session, session.begin():
                job = session.get(JobRow, job_id)
                item = session.get(JobItemRow, (job_id, position))
                if job is None or item is None or job.state not in OPEN_STATES:
                    return None
                if item.state in ITEM_FINAL:
                    return None
                if job.state == "queued":
                    job.state, job.started_at = "running", now()
                # Queued again by a sweep only once it has been answered this long (claim).
                item.queued_at = now()
                return Started(job, item)

        return await call_database(write, "read the job's photo")

    async def finish_item(
        self,
        job_id: str,
        position: int,
        state: str,
        analysis_id: str | None = None,
        error: tuple[str, str] | None = None,
        public_source: str | None = None,
    ) -> Finished:
        """Answer the photo once: `state` (done, skipped or failed), with its analysis or its
        error (errortype, message), its source from then on `public_source` (a URL without the
        query or credentials it was fetched with: gateway.tenancy). Its job's count moves with it,
        and once every photo is answered the job is complete: `finish_job` makes it done."""
        if state not in ITEM_FINAL:
            raise ValueError(f"{state!r} is not a final state of a job's photo")
        error_type, message = error if error is not None else (None, None)
        values: dict[str, Any] = {
            "state": state,
            "analysis_id": analysis_id,
            "error_type": error_type,
            "error_message": None if message is None else message[:ERROR_CHARS],
        }
        if public_source is not None:
            values["source"] = public_source

        def write() -> Finished:
            with self._session() as session, session.begin():
                moment = now()
                answered = _rowcount(
                    session.execute(
                        update(JobItemRow)
                        .where(
                            JobItemRow.job_id == job_id,
                            JobItemRow.position == position,
                            JobItemRow.state.not_in(ITEM_FINAL),
                        )
                        .values(**values, finished_at=moment)
                    )
                )
                if answered:
                    count = getattr(JobRow, state)
                    session.execute(
                        update(JobRow).where(JobRow.id == job_id).values({count: count + 1})
                    )
                job = session.get(JobRow, job_id, populate_existing=True)
                assert job is not None
                complete = (
                    job.state in OPEN_STATES and job.done + job.failed + job.skipped >= job.total
                )
                return Finished(bool(answered), complete, job)

        return await call_database(write, "record the photo's answer")

    async def cancel(self, job_id: str, owner: str) -> tuple[JobRow | None, bool]:
        """Cancel `owner`'s job if it is open: no photo of it starts after this. The job as it is
        now (None: no such job of `owner`'s), and whether this call cancelled it (one call
        only does: it sends the job's webhook)."""

        def write() -> tuple[JobRow | None, bool]:
            with self._session() as session, session.begin():
                cancelled = _rowcount(
                    session.execute(
                        update(JobRow)
                        .where(
                            JobRow.id == job_id,
                            JobRow.owner == owner,
                            JobRow.state.in_(OPEN_STATES),
                        )
                        .values(state="cancelled", finished_at=now())
                    )
                )
                query = select(JobRow).where(JobRow.id == job_id, JobRow.owner == owner)
                return session.scalars(query).first(), bool(cancelled)

        return await call_database(write, "cancel the job")

    async def items(self, job_id: str, after: int, limit: int) -> list[JobItemRow]:
        """The job's answered photos after position `after`, in order (the job's owner checked by
        the caller)."""

        def read() -> list[JobItemRow]:
            query = (
                select(JobItemRow)
                .where(
                    JobItemRow.job_id == job_id,
                    JobItemRow.position > after,
                    JobItemRow.state.in_(ITEM_FINAL),
                )
                .order_by(JobItemRow.position)
                .limit(limit)
            )
            with self._session() as session:
                return list(session.scalars(query))

        return await call_database(read, "read the job's results")

    async def analyses(self, ids: Sequence[str], owner: str) -> dict[str, AnalysisRow]:
        """`owner`'s analyses by id."""

        def read() -> dict[str, AnalysisRow]:
            if not ids:
                return {}
            query = select(AnalysisRow).where(AnalysisRow.id.in_(ids), AnalysisRow.owner == owner)
            with self._session() as session:
                return {row.id: row for row in session.scalars(query)}

        return await call_database(read, "read the job's analyses")

    async def finish_job(self, job_id: str, album: dict[str, Any]) -> JobRow | None:
        """The complete job done, with its album, in one conditional UPDATE: the job after it
        when this call finished it (one call does, of the last photo's worker and the sweeps; it
        sends the webhook), else None. A client never reads a done job without its album."""

        def write() -> JobRow | None:
            with self._session() as session, session.begin():
                finished = _rowcount(
                    session.execute(
                        update(JobRow)
                        .where(
                            JobRow.id == job_id,
                            JobRow.state.in_(OPEN_STATES),
                            JobRow.done + JobRow.failed + JobRow.skipped >= JobRow.total,
                        )
                        .values(state="done", album=album, finished_at=now())
                    )
                )
                return session.get(JobRow, job_id, populate_existing=True) if finished else None

        return await call_database(write, "finish the job")


def _move(
    session: Session,
    job_id: str,
    position: int,
    source: str,
    moment: dt.datetime,
    *conditions: ColumnElement[bool],
) -> list[int]:
    """Queue the item if it is still in state `source` (and `conditions` hold): [position] if
    this call did."""
    moved = _rowcount(
        session.execute(
            update(JobItemRow)
            .where(
                JobItemRow.job_id == job_id,
                JobItemRow.position == position,
                JobItemRow.state == source,
                *conditions,
            )
            .values(state="queued", queued_at=moment)
        )
    )
    return [position] if moved else []


def _rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE changed."""
    return int(cast(CursorResult[Any], result).rowcount)
