"""The results store (gateway.store.storage) against a real PostgreSQL cluster that is stopped and
started again under it, and against a server that accepts connections but never answers: each
call fails as StorageError within a bounded time, leaves no row, and the same store works again
once the server is back."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from gateway.errors import StorageError
from gateway.store.migrate import upgrade_schema
from gateway.store.storage import DATABASE_TIMEOUT_S, AnalysisStore
from gateway.tenancy import ANONYMOUS
from tests.utils.analyses import count_analyses, sample_row
from tests.utils.postgres import PostgresCluster, postgres_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    """A cluster of its own, migrated: this test stops it."""
    with postgres_cluster() as started:
        upgrade_schema(started.url)
        yield started


def test_analysis_store_fails_while_postgres_is_down_and_heals_after(
    cluster: PostgresCluster,
) -> None:
    store = AnalysisStore(cluster.url)
    try:
        asyncio.run(store.save(sample_row()))  # the pool now holds a connection
        cluster.stop("fast")
        started = time.monotonic()
        for call in (
            store.save(sample_row()),
            store.find_cached("a" * 64, "b" * 64, ANONYMOUS, ""),
        ):
            with pytest.raises(StorageError, match="results database is unavailable"):
                asyncio.run(call)
        assert time.monotonic() - started < DATABASE_TIMEOUT_S
        cluster.start()
        healed = sample_row()
        asyncio.run(store.save(healed))  # the same store and engine: the dead connection is gone
        assert asyncio.run(store.get(healed.id, ANONYMOUS)) is not None
    finally:
        store.dispose()
    assert count_analyses(cluster.url) == 2


def test_analysis_store_gives_up_on_a_server_that_never_answers() -> None:
    """A port whose connections the kernel accepts but nothing ever reads (a hung or
    unreachable server): connecting is bounded by DATABASE_TIMEOUT_S, not TCP's minutes."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        store = AnalysisStore(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres")
        started = time.monotonic()
        try:
            with pytest.raises(StorageError, match="results database is unavailable"):
                asyncio.run(store.find_cached("a" * 64, "b" * 64, ANONYMOUS, ""))
        finally:
            store.dispose()
        assert time.monotonic() - started < DATABASE_TIMEOUT_S + 3
