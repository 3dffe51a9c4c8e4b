"""A real PostgreSQL server from Debian's package, in a temporary directory on a free port."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from tests.utils.ports import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*command: str) -> list[str]:
    """initdb refuses to run as root, so run the server as the `postgres` user when we are."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return list(command)


class PostgresCluster:
    """One PostgreSQL cluster (data directory) on a fixed loopback port, which a fault test can
    stop and start again: the same data, port and URL."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data, self.sockets, self.log = root / "data", root / "sockets", root / "server.log"
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"

    def initdb(self) -> None:
        self.sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sockets, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` ends every session (rolling back open transactions) and shuts
        down cleanly, `immediate` kills it as a crash would."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            _as_postgres(str(BIN / program), *args),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A fresh, started cluster on a free port; stopped (if running) and removed afterwards."""
    if not (BIN / "initdb").exists():
        raise RuntimeError(f"PostgreSQL 15 is not installed ({BIN}); apt-get install postgresql.")
    root = Path(tempfile.mkdtemp(prefix="picmetric-pg-"))
    cluster = PostgresCluster(root, free_port())
    try:
        cluster.initdb()
        cluster.start()
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields an SQLAlchemy URL of a fresh server; stops it and removes its files afterwards."""
    with postgres_cluster() as cluster:
        yield cluster.url


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server at `server_url` (see postgres_server); yields its URL
    and drops it afterwards, so that tests sharing one server do not see each other's tables."""
    name = f"test_{uuid.uuid4().hex}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
