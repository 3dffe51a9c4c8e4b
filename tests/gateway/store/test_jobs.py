"""The jobs tables (gateway.store.jobs) on SQLite and PostgreSQL: a photo is answered once
whatever delivers it again, windows are claimed once, idempotency keys are per owner."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from gateway.results import new_id
from gateway.store.jobs import JobStore, now
from gateway.store.migrate import upgrade_schema
from gateway.store.storage import JobRow, create_database_engine
from tests.gateway.conftest import database_of
from tests.utils.postgres import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JobStore]:
    """A JobStore on a database of its own (its open jobs are no worker's business)."""
    with ExitStack() as stack:
        url = database_of(request, tmp_path_factory.mktemp("jobs"))
        if request.param == "postgresql":
            url = stack.enter_context(fresh_database(url))
        upgrade_schema(url)
        engine = create_database_engine(url)
        stack.callback(engine.dispose)
        yield JobStore(engine)


def _job(owner: str, total: int, key: str | None = None) -> JobRow:
    return JobRow(
        id=new_id(),
        owner=owner,
        state="queued",
        source_kind="urls",
        source=f"{total} URLs",
        options={},
        idempotency_key=key,
        total=total,
        done=0,
        failed=0,
        skipped=0,
        created_at=now(),
    )


def test_finish_item_answers_a_photo_once_and_finish_job_finishes_it_once(store: JobStore) -> None:
    async def run() -> None:
        job, created = await store.create(_job("a", 2), ["s3://b/1.jpg", "s3://b/2.jpg"])
        assert created
        assert await store.claim(job.id, 8, None) == [0, 1]
        assert await store.claim(job.id, 8, None) == []  # claimed once
        first = await store.finish_item(job.id, 0, "done", "analysis-0")
        again = await store.finish_item(job.id, 0, "failed", error=("fetch_failed", "no"))
        assert (first.answered, again.answered) == (True, False)
        assert await store.start_item(job.id, 0) is None  # answered: a redelivery does nothing
        assert await store.start_item(job.id, 1) is not None
        last = await asyncio.gather(
            *(store.finish_item(job.id, 1, "skipped", "x") for _ in range(3))
        )
        assert sorted(f.answered for f in last) == [False, False, True]
        assert [f.job_complete for f in last] == [True, True, True]
        running = await store.get(job.id, "a")
        assert running is not None and running.state == "running"  # done once its album is in
        finishes = await asyncio.gather(
            *(store.finish_job(job.id, {"images": 2}) for _ in range(3))
        )
        assert sorted(f is not None for f in finishes) == [False, False, True]
        final = await store.get(job.id, "a")
        assert final is not None and (final.state, final.done, final.skipped, final.failed) == (
            "done",
            1,
            1,
            0,
        )
        items = await store.items(job.id, -1, 10)
        assert [(i.position, i.state, i.analysis_id) for i in items] == [
            (0, "done", "analysis-0"),
            (1, "skipped", "x"),
        ]

    asyncio.run(run())


def test_claim_keeps_a_window_and_queues_stale_photos_again(store: JobStore) -> None:
    async def run() -> None:
        job, _ = await store.create(_job("a", 5), [f"s3://b/{i}.jpg" for i in range(5)])
        assert await store.claim(job.id, 2, None) == [0, 1]
        await store.finish_item(job.id, 0, "done", "x")
        assert await store.claim(job.id, 2, None) == [2]
        later = now() + dt.timedelta(seconds=1)
        assert sorted(await store.claim(job.id, 2, later)) == [1, 2]  # sent again, no new ones
        assert await store.claim(job.id, 2, now() - dt.timedelta(seconds=60)) == []

    asyncio.run(run())


def test_idempotency_key_is_per_owner_and_cancel_is_the_owners(store: JobStore) -> None:
    a, b = new_id(), new_id()  # owners of their own in the session's PostgreSQL

    async def run() -> None:
        first, created = await store.create(_job(a, 1, key="k"), ["u"])
        again, created_again = await store.create(_job(a, 1, key="k"), ["u"])
        other, created_other = await store.create(_job(b, 1, key="k"), ["u"])
        assert created and not created_again and created_other
        assert again.id == first.id != other.id
        assert await store.get(first.id, b) is None
        assert await store.cancel(first.id, b) == (None, False)
        cancelled, by_this_call = await store.cancel(first.id, a)
        assert cancelled is not None and cancelled.state == "cancelled" and by_this_call
        again, by_this_call = await store.cancel(first.id, a)  # one call only cancels it
        assert again is not None and again.state == "cancelled" and not by_this_call
        assert await store.claim(first.id, 8, None) == []
        assert await store.start_item(first.id, 0) is None
        assert await store.load(a) == (0, 0)
        assert await store.load(b) == (1, 1)

    asyncio.run(run())
