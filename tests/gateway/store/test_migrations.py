"""Schema migrations (gateway.store.migrate) on a fresh SQLite file and a fresh database on a real
PostgreSQL server: an empty database, one made by the old `create_all`, a second run, a schema
newer than the code, and the revisions against the models (Alembic's autogenerate comparison)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, inspect, text

from gateway.main import create_app
from gateway.settings import Settings
from gateway.store.migrate import (
    PRE_MIGRATION_COLUMNS,
    SchemaError,
    alembic_config,
    check_schema,
    head_revision,
    upgrade_schema,
)
from gateway.store.storage import AnalysisRow, AnalysisStore, Base
from gateway.tenancy import ANONYMOUS
from tests.utils.analyses import sample_row
from tests.utils.ports import free_port
from tests.utils.postgres import fresh_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'analyses.db'}"
        return
    with fresh_database(request.getfixturevalue("postgres_url")) as url:
        yield url


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def _differences(url: str, metadata: MetaData) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def _stored(url: str, analysis_id: str) -> AnalysisRow | None:
    store = AnalysisStore(url)
    try:
        return asyncio.run(store.get(analysis_id, ANONYMOUS))
    finally:
        store.dispose()


def test_upgrade_schema_creates_the_tables_and_alembic_version_on_an_empty_database(
    database_url: str,
) -> None:
    upgrade_schema(database_url)
    assert _tables(database_url) == {"analyses", "jobs", "job_items", "alembic_version"}
    assert _revision(database_url) == head_revision()
    store = AnalysisStore(database_url)
    try:
        asyncio.run(store.save(sample_row("new")))
    finally:
        store.dispose()
    stored = _stored(database_url, "new")
    assert stored is not None and stored.result == sample_row("new").result


def test_upgrade_schema_adopts_a_database_made_by_create_all(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The pre-migration code path: create_all on the models of then, then a stored analysis."""
    _save_old_rows(database_url, _create_all_before_migrations, sample_row("old"))

    with caplog.at_level(logging.INFO, logger="gateway.store.migrate"):
        upgrade_schema(database_url)

    assert "adopting the analyses table" in caplog.text
    assert _revision(database_url) == head_revision()
    stored = _stored(database_url, "old")
    assert stored is not None
    assert (stored.source, stored.width, stored.models) == (
        "https://example.com/cat.jpg",
        640,
        {"resnet50": {"version": "1"}},
    )
    created = stored.created_at  # SQLite gives it back without its time zone
    assert created.replace(tzinfo=created.tzinfo or dt.UTC) == sample_row("old").created_at


def _create_all_before_migrations(url: str) -> None:
    """The table as `Base.metadata.create_all` made it before migrations: today's model without
    the columns revisions added since."""
    table = Base.metadata.tables["analyses"]
    old = MetaData()
    # Columns copied with index=True bring their indexes.
    Table("analyses", old, *(c._copy() for c in table.columns if c.name in PRE_MIGRATION_COLUMNS))
    engine = create_engine(url)
    old.create_all(engine)
    engine.dispose()


def _save_old_rows(url: str, create: Callable[[str], None], *rows: AnalysisRow) -> None:
    """`create` the table of an older revision, then insert `rows` without their new columns."""
    create(url)
    engine = create_engine(url)
    table = Table("analyses", MetaData(), autoload_with=engine)
    with engine.begin() as connection:
        for row in rows:
            values = {c.name: getattr(row, c.name) for c in table.columns}
            connection.execute(insert(table).values(**values))
    engine.dispose()


def _upgrade_to_0001(url: str) -> None:
    command.upgrade(alembic_config(url), "0001")


def test_revision_0002_gives_old_analyses_the_anonymous_owner_and_strips_url_secrets(
    database_url: str,
) -> None:
    """Analyses stored at 0001 belong to the anonymous owner after 0002, and their URLs lose the
    userinfo, query string and fragment the gateway used to keep; s3 and upload sources stay."""
    secret = sample_row("secret")
    secret.source = "https://user:hunter2@example.com:8443/a/cat.jpg?token=abc#frag"
    upload = sample_row("upload")
    upload.source_kind, upload.source = "upload", "upload:what?.jpg"
    _save_old_rows(database_url, _upgrade_to_0001, secret, upload, sample_row("plain"))

    upgrade_schema(database_url)

    assert _revision(database_url) == head_revision()
    stored = {name: _stored(database_url, name) for name in ("secret", "upload", "plain")}
    assert all(row is not None and row.owner == ANONYMOUS for row in stored.values())
    assert stored["secret"].source == "https://example.com:8443/a/cat.jpg"  # type: ignore[union-attr]
    assert stored["upload"].source == "upload:what?.jpg"  # type: ignore[union-attr]
    assert stored["plain"].source == "https://example.com/cat.jpg"  # type: ignore[union-attr]


def test_migrations_match_the_models(database_url: str) -> None:
    """Oracle: Alembic's autogenerate comparison finds no difference between the database at
    head and `Base.metadata`; a change to AnalysisRow without a revision fails here."""
    upgrade_schema(database_url)
    assert _differences(database_url, Base.metadata) == []


def test_migrations_comparison_sees_a_column_missing_from_the_revisions(
    database_url: str,
) -> None:
    """The oracle above is not blind: a model with one more column differs from the revisions."""
    upgrade_schema(database_url)
    changed = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["analyses"].append_column(Column("extra", Integer))
    (difference,) = _differences(database_url, changed)
    assert isinstance(difference, tuple) and difference[0] == "add_column"


def test_upgrade_schema_twice_is_a_no_op(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    upgrade_schema(database_url)
    store = AnalysisStore(database_url)
    asyncio.run(store.save(sample_row("kept")))
    store.dispose()

    with caplog.at_level(logging.INFO, logger="gateway.store.migrate"):
        upgrade_schema(database_url)

    assert f"already at {head_revision()}" in caplog.text and "upgrading" not in caplog.text
    assert _revision(database_url) == head_revision()
    assert _stored(database_url, "kept") is not None


def test_upgrade_schema_refuses_a_revision_outside_its_chain(database_url: str) -> None:
    upgrade_schema(database_url)
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'a1b2c3'"))
    engine.dispose()

    with pytest.raises(SchemaError, match="revision a1b2c3, which this Picmetric does not know"):
        upgrade_schema(database_url)
    with pytest.raises(SchemaError, match="does not descend from it"):
        check_schema(database_url)
    assert _revision(database_url) == "a1b2c3"


def _newer_release(url: str, *statements: str) -> str:
    """What a later release's migration did to the database: `statements`, and its revision
    (the next number after this code's head)."""
    newer = f"{int(head_revision()) + 1:04d}"
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
        connection.execute(text(f"UPDATE alembic_version SET version_num = '{newer}'"))
    engine.dispose()
    return newer


def test_old_code_runs_on_a_newer_expanded_schema(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Expand, then contract (issue 30): a newer release added a nullable column and a table;
    this code's check accepts the database, `picmetric migrate` of this code changes nothing,
    and the store reads and writes as before, so old pods run through a rollout and a rollback.
    On main the check refused any revision it did not know: old pods crash-looped."""
    upgrade_schema(database_url)
    newer = _newer_release(
        database_url,
        "ALTER TABLE analyses ADD COLUMN labels_version VARCHAR(16)",
        "CREATE TABLE album_shares (id VARCHAR(36) PRIMARY KEY)",
    )
    with caplog.at_level(logging.WARNING, logger="gateway.migrate"):
        check_schema(database_url)
        upgrade_schema(database_url)
    assert f"at revision {newer}, newer than this code's {head_revision()}" in caplog.text
    assert _revision(database_url) == newer
    store = AnalysisStore(database_url)
    asyncio.run(store.save(sample_row("after-expand")))
    store.dispose()
    assert _stored(database_url, "after-expand") is not None


@pytest.mark.parametrize(
    ("statement", "complaint"),
    [
        ("ALTER TABLE analyses DROP COLUMN timings", "no column analyses.timings"),
        (
            "ALTER TABLE analyses ADD COLUMN tenant VARCHAR(16) NOT NULL DEFAULT 'x'",
            None,  # a default: this code's inserts still work
        ),
        (
            "ALTER TABLE analyses ADD COLUMN region VARCHAR(16) NOT NULL",
            "analyses.region is NOT NULL without a default",
        ),
    ],
    ids=["dropped column", "not null with default", "not null without default"],
)
def test_old_code_refuses_a_newer_contracted_schema(
    database_url: str, statement: str, complaint: str | None
) -> None:
    upgrade_schema(database_url)
    if "NOT NULL" in statement and "DEFAULT" not in statement:
        # SQLite adds a NOT NULL column only with a default; an empty table on PostgreSQL takes it.
        if database_url.startswith("sqlite"):
            pytest.skip("SQLite cannot add a NOT NULL column without a default")
    _newer_release(database_url, statement)
    if complaint is None:
        check_schema(database_url)
        return
    with pytest.raises(SchemaError, match="no longer compatible") as refused:
        check_schema(database_url)
    assert complaint in str(refused.value)


def test_upgrade_schema_refuses_an_analyses_table_it_did_not_make(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE analyses (id VARCHAR(36) PRIMARY KEY)"))
    engine.dispose()

    with pytest.raises(SchemaError, match="not those of the table made before migrations"):
        upgrade_schema(database_url)
    assert _revision(database_url) is None


def test_check_schema_fails_until_the_database_is_migrated(database_url: str) -> None:
    with pytest.raises(SchemaError, match="run `picmetric migrate` first"):
        check_schema(database_url)
    upgrade_schema(database_url)
    check_schema(database_url)


def test_gateway_start_migrates_unless_told_the_deployment_does(tmp_path: Path) -> None:
    """The real app with no Triton behind it (a closed port): its start-up is what is tested."""

    def settings(name: str, migrate_on_start: bool) -> Settings:
        return Settings(
            triton_grpc_url=f"127.0.0.1:{free_port()}",
            triton_timeout_s=2,
            database_url=f"sqlite:///{tmp_path / name}",
            migrate_on_start=migrate_on_start,
        )

    with TestClient(create_app(settings("started.db", migrate_on_start=True))):
        pass
    assert _revision(f"sqlite:///{tmp_path / 'started.db'}") == head_revision()

    with (
        pytest.raises(SchemaError, match="run `picmetric migrate` first"),
        TestClient(create_app(settings("unmigrated.db", migrate_on_start=False))),
    ):
        pass


def _picmetric_migrate(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "picmetric", "migrate"],
        env={**os.environ, "PICMETRIC_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_picmetric_migrate_upgrades_and_refuses_a_newer_schema_in_one_line(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'analyses.db'}"
    done = _picmetric_migrate(database_url)
    assert done.returncode == 0, done.stderr
    assert f"upgrading from an empty database to {head_revision()}" in done.stderr
    assert _revision(database_url) == head_revision()

    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'a1b2c3'"))
    engine.dispose()
    refused = _picmetric_migrate(database_url)
    assert refused.returncode == 1
    assert "does not know" in refused.stderr and "Traceback" not in refused.stderr
