"""Readiness under a queue longer than the canary's deadline, against a real Triton and gateway
(issue 30): with admission raised so that Triton's queue holds many seconds of work, every
/readyz answers 200 within seconds (the analyses' answered inferences prove Triton, no canary
waits in the queue, and a probe never waits on a running check); when Triton is gone, /readyz
turns 503 within seconds. On main's readiness a probe waited for a canary queued behind the load."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from gateway.triton.catalog import CANARY_TIMEOUT_S
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.load import Load
from tests.utils.ports import free_port
from tests.utils.real_photos import jpeg_bytes, real_photo
from tests.utils.services import gateway_env, gateway_process, ops_url

pytestmark = pytest.mark.integration

CLIENTS = 16  # all admitted: Triton's queue, not the gateway, holds the work
LOAD_S = 45.0
PROBE_PERIOD_S = 1.0
# Far below the chart's probe timeout (25 s) and the queue's length under this load.
PROBE_ANSWER_S = 10.0
UNREADY_WITHIN_S = 15.0


def _probe(url: str) -> tuple[int, float]:
    started = time.monotonic()
    try:
        status = httpx.get(f"{url}/readyz", timeout=60).status_code
    except httpx.TimeoutException:
        status = 0
    return status, time.monotonic() - started


def test_readyz_stays_ready_under_a_long_queue_and_turns_unready_when_triton_goes(
    model_repository: Path, tmp_path: Path
) -> None:
    ports = TritonPorts(free_port(), free_port(), free_port())
    with TritonServer(model_repository, ports, log_file=tmp_path / "triton.log") as triton:
        env = gateway_env(
            triton,
            model_repository,
            f"sqlite:///{tmp_path / 'analyses.db'}",
            max_analyses_in_flight=str(CLIENTS * 2),
            triton_timeout_s="180",
            # A canary is due every 20 s, as production's 60 s would be over a longer load.
            canary_max_age_s="20",
            canary_retry_s="1",
        )
        with gateway_process(env, tmp_path / "gateway.log") as url:
            assert _probe(url)[0] == 200  # the first check's canary, on an idle Triton
            jpeg = jpeg_bytes(real_photo(0.5))
            probes: list[tuple[int, float]] = []
            with Load(url, jpeg, CLIENTS, timeout_s=240) as load:
                started = time.monotonic()
                while time.monotonic() - started < LOAD_S:
                    probes.append(_probe(url))
                    time.sleep(PROBE_PERIOD_S)
                report = httpx.get(f"{ops_url(url)}/readyz", timeout=60).json()
                answers = list(load.answers)
                served = [a for a in answers if a.status == 200]
                slowest = max((a.seconds for a in served), default=0.0)
                # Triton is gone while analyses are still queued.
                triton.stop()
                gone = time.monotonic()
                unready_after = None
                while time.monotonic() - gone < UNREADY_WITHIN_S * 2:
                    if _probe(url)[0] == 503:
                        unready_after = time.monotonic() - gone
                        break
                    time.sleep(0.5)
    print(
        f"\n{len(probes)} probes under load, slowest {max(s for _, s in probes):.2f} s; "
        f"{len(served)} analyses served, slowest {slowest:.1f} s; "
        f"unready {unready_after} s after Triton stopped; statuses "
        f"{sorted(Counter(a.status for a in answers).items(), key=str)}; report {report}"
    )
    assert served, "the load was served"
    assert slowest > CANARY_TIMEOUT_S, "Triton's queue must hold more than the canary's deadline"
    assert [status for status, _ in probes] == [200] * len(probes), probes
    assert max(seconds for _, seconds in probes) < PROBE_ANSWER_S, probes
    assert report["proof"] in ("answer", "in_flight")
    assert unready_after is not None and unready_after < UNREADY_WITHIN_S
