"""A client's text in a path stays on its log line through the real gateway, however it is
started: `picmetric gateway` (whose root logger has a handler) and uvicorn with the app factory
(whose root logger has none, so the gateway's warnings reach Python's last-resort handler)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.utils.ports import free_port
from tests.utils.services import gateway_process, wait_for_http

pytestmark = pytest.mark.integration

FORGED = "2026-01-01 00:00:00,000 ERROR gateway: FORGED"


@contextmanager
def uvicorn_factory(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "gateway.main:create_app"]
    with log.open("wb") as out:
        process = subprocess.Popen([*command, "--port", str(port)], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/healthz", process, log)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.parametrize("start", ["picmetric gateway", "uvicorn --factory"])
def test_a_newline_in_an_analysis_id_stays_on_its_log_line(start: str, tmp_path: Path) -> None:
    env = {
        # No Triton: the 404 needs only the database.
        "PICMETRIC_TRITON_GRPC_URL": f"127.0.0.1:{free_port()}",
        "PICMETRIC_DATABASE_URL": f"sqlite:///{tmp_path / 'analyses.db'}",
    }
    log = tmp_path / "gateway.log"
    if start == "picmetric gateway":
        running = gateway_process(env, log)
    else:
        running = uvicorn_factory({**os.environ, **env}, log)
    with running as url:
        for path in ("%0A", "%0D%0A", "%E2%80%A8"):
            answer = httpx.get(f"{url}/v1/analyses/a{path}{FORGED}")
            assert answer.status_code == 404, answer.text
    lines = log.read_text().splitlines()
    echoed = [line for line in lines if "FORGED" in line]
    assert any(f"No analysis with id 'a\\n{FORGED}" in line for line in echoed), lines
    assert all("/v1/analyses/a" in line for line in echoed), lines
