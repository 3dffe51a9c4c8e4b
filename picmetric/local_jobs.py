"""What `picmetric serve` runs for bulk jobs when PICMETRIC_REDIS_URL is unset, so jobs work
with nothing set up by hand: Debian's redis-server on loopback (its append-only file under the
cache folder, so queued photos survive a restart of serve) and one `picmetric worker`, both
stopped with serve."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from core.paths import cache_dir

log = logging.getLogger(__name__)

REDIS_BIN = "redis-server"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 70.0  # the worker finishes the photos it is answering (shutdown_timeout_s)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_answers(port: int) -> bool:
    """Whether a Redis on this loopback port answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class LocalJobs:
    """redis-server and one worker, as child processes of serve."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or cache_dir() / "redis"
        self.redis: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.url: str | None = None

    def start_redis(self) -> str | None:
        """Start redis-server; its redis:// URL, or None (logged) when it is not installed."""
        binary = shutil.which(REDIS_BIN)
        if binary is None:
            log.warning(
                "Bulk jobs are off: redis-server is not installed (./bootstrap.sh serve installs "
                "it) and PICMETRIC_REDIS_URL is unset."
            )
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        command = [
            binary,
            *("--bind", "127.0.0.1", "--port", str(port), "--protected-mode", "yes"),
            *("--save", "", "--appendonly", "yes", "--dir", str(self.folder)),
            *("--logfile", str(self.folder / "redis.log")),
        ]
        self.redis = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not redis_answers(port):
            if self.redis.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server did not start (its log: {self.folder / 'redis.log'}); set "
                    "PICMETRIC_REDIS_URL to a running Redis instead."
                )
            time.sleep(0.1)
        self.url = f"redis://127.0.0.1:{port}/0"
        log.info("Bulk jobs: Redis on %s, its data in %s", self.url, self.folder)
        return self.url

    def start_worker(self, env: dict[str, str]) -> None:
        """One `picmetric worker` with serve's settings plus `env` (the Triton and Redis serve
        runs); its metrics on a free port, not the gateway's."""
        settings = {"PICMETRIC_OPS_PORT": str(_free_port()), **env}
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "picmetric", "worker"], env={**os.environ, **settings}
        )
        log.info("Bulk jobs: a worker runs (pid %d)", self.worker.pid)

    def stop(self) -> None:
        """The worker first (it finishes its photos), then Redis (which writes its file)."""
        for process in (self.worker, self.redis):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.worker = self.redis = None
