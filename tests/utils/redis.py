"""A real Redis server from Debian's package, in a temporary directory on a free loopback port:
without persistence, or (RedisServer) with its append-only file, restartable on the same port
with what it held."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from picmetric.local_jobs import redis_answers
from tests.utils.ports import free_port
from tests.utils.services import wait_until

BIN = "/usr/bin/redis-server"


class RedisServer:
    """redis-server on one loopback port and data folder, which a test can stop (SIGTERM: it
    writes its append-only file and exits) and start again."""

    def __init__(self, root: Path, appendonly: bool) -> None:
        if not Path(BIN).exists():
            raise RuntimeError(f"Redis is not installed ({BIN}); apt-get install redis-server.")
        self.root = root
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if appendonly else []
        self.command = [
            BIN,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *("--dir", str(root), *persistence),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.root / "server.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: redis_answers(self.port), 20, "Redis answering PING", log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@contextmanager
def redis_servers(appendonly: bool) -> Iterator[RedisServer]:
    """A started RedisServer; stopped and its folder removed afterwards."""
    server = RedisServer(Path(tempfile.mkdtemp(prefix="picmetric-redis-")), appendonly)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@contextmanager
def redis_server() -> Iterator[str]:
    """redis-server without persistence on a free port; yields its redis:// URL."""
    with redis_servers(appendonly=False) as server:
        yield server.url
