"""A real Redis server from Debian's package, in a temporary directory on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.utils.ports import free_port
from tests.utils.services import wait_until

BIN = "/usr/bin/redis-server"


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server() -> Iterator[str]:
    """redis-server without persistence on a free port; yields its redis:// URL."""
    if not Path(BIN).exists():
        raise RuntimeError(f"Redis is not installed ({BIN}); apt-get install redis-server.")
    root = Path(tempfile.mkdtemp(prefix="picmetric-redis-"))
    port = free_port()
    command = [BIN, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(root)]
    with (root / "server.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _answers(port), 20, "Redis answering PING", root / "server.log")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(root, ignore_errors=True)
