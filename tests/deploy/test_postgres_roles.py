"""The compose host's runtime database role (deploy/postgres/init-app-role.sh), made on a real
PostgreSQL server as the postgres image's entrypoint runs it: the gateway's role reads and writes
analyses and passes the schema check, and cannot create, alter or drop anything."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import ProgrammingError

from core.paths import PROJECT_ROOT
from gateway.store.migrate import check_schema, upgrade_schema
from gateway.store.storage import AnalysisStore
from gateway.tenancy import ANONYMOUS
from tests.utils.analyses import sample_row
from tests.utils.postgres import fresh_database, postgres_server

pytestmark = pytest.mark.integration

SCRIPT = PROJECT_ROOT / "deploy" / "postgres" / "init-app-role.sh"
ROLE, PASSWORD = "picmetric_app", "app-pw"


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def owner_url(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url) as url:
        yield url
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP ROLE IF EXISTS {ROLE}"))
    admin.dispose()


def test_the_runtime_role_uses_the_schema_and_cannot_change_it(owner_url: str) -> None:
    url = make_url(owner_url)
    env = {
        **os.environ,
        "POSTGRES_USER": str(url.username),
        "POSTGRES_DB": str(url.database),
        "POSTGRES_APP_PASSWORD": PASSWORD,
        "PGHOST": str(url.host),
        "PGPORT": str(url.port),
    }
    made = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    upgrade_schema(owner_url)  # the migrate service, as the owner, after the role exists
    app_url = url.set(username=ROLE, password=PASSWORD).render_as_string(hide_password=False)
    check_schema(app_url)
    store = AnalysisStore(app_url)
    try:
        asyncio.run(store.save(sample_row("by-app")))
        assert asyncio.run(store.get("by-app", ANONYMOUS)) is not None
    finally:
        store.dispose()
    engine = create_engine(app_url)
    try:
        for statement in (
            "CREATE TABLE intruder (id INTEGER)",
            "ALTER TABLE analyses ADD COLUMN extra TEXT",
            "DROP TABLE analyses",
        ):
            with pytest.raises(ProgrammingError, match="permission denied|must be owner"):
                with engine.begin() as connection:
                    connection.execute(text(statement))
    finally:
        engine.dispose()
