"""Real servers on loopback for gateway tests: moto's S3 server and the gateway under uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from picmetric.triton_server import TritonServer, die_with_parent
from tests.utils.ports import free_port

S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    """moto in server mode (a real HTTP S3 API) on one loopback port, which a fault test can stop
    (the port then refuses connections) and start again; moto keeps buckets and objects in this
    process, so they are still there after a restart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server._server.server_close()  # moto leaves the socket listening
            self._server = None


@contextmanager
def restartable_s3_server() -> Iterator[S3Server]:
    """A started S3Server on a free port; stopped afterwards."""
    server = S3Server(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its URL."""
    with restartable_s3_server() as server:
        yield server.url


def wait_until(
    condition: Callable[[], object], timeout: float, what: str, log: Path | None = None
) -> float:
    """Seconds until `condition()` held; fails the test after `timeout`, with the end of `log`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            tail = f":\n{log.read_text()[-3000:]}" if log is not None else ""
            pytest.fail(f"{what} did not happen within {timeout:.0f} s{tail}")
        time.sleep(0.2)
    return time.monotonic() - started


def wait_for_http(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited early:\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


def gateway_env(
    triton: TritonServer, model_repository: Path, database_url: str, **settings: str
) -> dict[str, str]:
    """The PICMETRIC_* environment of a gateway on the tests' Triton (its admin key included) and
    `database_url`; `settings` adds more by name: `api_keys="k"` is PICMETRIC_API_KEYS=k."""
    return {
        "PICMETRIC_TRITON_GRPC_URL": triton.grpc_url,
        "PICMETRIC_TRITON_ADMIN_KEY": triton.admin_key,
        "PICMETRIC_MODEL_REPOSITORY": str(model_repository),
        "PICMETRIC_DATABASE_URL": database_url,
        **{f"PICMETRIC_{name.upper()}": value for name, value in settings.items()},
    }


# The operations port (/metrics, the readiness report) of each running gateway_process, by its
# API URL.
_OPS_URLS: dict[str, str] = {}


def ops_url(gateway_url: str) -> str:
    """The operations port's URL of the gateway_process answering at `gateway_url`."""
    return _OPS_URLS[gateway_url]


@contextmanager
def gateway_process(
    env: dict[str, str],
    log: Path,
    picmetric: list[str] | None = None,
    base_env: dict[str, str] | None = None,
) -> Iterator[str]:
    """`picmetric gateway` (uvicorn) on a free port, its operations port on another (`ops_url`),
    with PICMETRIC_* settings from `env`; another install's `picmetric` and environment instead
    of this interpreter's and this process's."""
    port = free_port()
    command = [*(picmetric or [sys.executable, "-m", "picmetric"]), "gateway", "--port", str(port)]
    command = die_with_parent(command)  # none left behind by a killed run or benchmark
    environ = os.environ if base_env is None else base_env
    ops_port = env.get("PICMETRIC_OPS_PORT") or str(free_port())
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env={**environ, **S3_CREDENTIALS, **env, "PICMETRIC_OPS_PORT": ops_port},
            stdout=out,
            stderr=out,
        )
    base = f"http://127.0.0.1:{port}"
    _OPS_URLS[base] = f"http://127.0.0.1:{ops_port}"
    try:
        wait_for_http(f"{base}/healthz", process, log)
        yield base
    finally:
        _OPS_URLS.pop(base, None)
        process.terminate()
        process.wait(30)
