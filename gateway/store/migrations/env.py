"""Alembic's entry point, run by `alembic.command`: the configuration is built in code by
gateway.store.migrate.alembic_config, which may hand over an open connection in
`config.attributes["connection"]` (so that one transaction holds the lock and the upgrade)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from gateway.store.storage import Base


def run_migrations(connection: Connection) -> None:
    # compare_type: a changed column type is a difference too (the default since Alembic 1.12).
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Offline (--sql) migrations are not supported; run them on a database.")
run_migrations_online()
