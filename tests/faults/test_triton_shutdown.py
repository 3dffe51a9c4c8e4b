"""SIGTERM to a Triton under load, as Kubernetes sends one on a scale-in or a rolling update: the
gateway's models run concurrently on two local Tritons behind one gRPC address (the channel's
first, then the other when the first goes away, as a gateway's connection to a Triton Service
does). No analysis fails that was sent before the signal: the ones Triton drops (an ensemble's
next step is refused while it stops) are retried once on the other Triton."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tritonclient.grpc.aio as grpcclient
from prometheus_client import REGISTRY

from gateway.errors import PicmetricError
from gateway.images.decode import DecodedImage
from gateway.results import Options
from gateway.services import TRITON_CHANNEL
from gateway.settings import Settings
from gateway.triton.inference import MODELS, Call, run_models
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.ports import free_port
from tests.utils.real_photos import real_photo

pytestmark = pytest.mark.integration

CLIENTS = 4
LOAD_BEFORE_S = 4.0  # analyses running before the signal
LOAD_AFTER_S = 12.0  # and after it: past the stopped Triton's exit (about 5 s here)
EXIT_LIMIT_S = 40.0  # Triton's default --exit-timeout-secs is 30


@dataclass(frozen=True)
class Answer:
    sent: float
    ended: float
    error: str | None  # None: served


@pytest.fixture
def two_tritons(model_repository: Path, tmp_path: Path) -> Iterator[list[TritonServer]]:
    servers = [
        TritonServer(
            model_repository,
            TritonPorts(free_port(), free_port(), free_port()),
            log_file=tmp_path / f"triton-{index}.log",
        )
        for index in range(2)
    ]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


async def _load(call: Call, image: DecodedImage, until: float, answers: list[Answer]) -> None:
    specs = list(MODELS.values())
    options = Options(threshold=0.2, max_results=5)
    while time.monotonic() < until:
        sent = time.monotonic()
        try:
            await run_models(specs, call, image, options)
            answers.append(Answer(sent, time.monotonic(), None))
        except PicmetricError as exc:
            answers.append(Answer(sent, time.monotonic(), f"{exc.errortype}: {exc}"))
            await asyncio.sleep(0.2)


def _retries(outcome: str) -> float:
    return sum(
        REGISTRY.get_sample_value(
            "picmetric_triton_retries_total", {"model": model, "outcome": outcome}
        )
        or 0.0
        for model in MODELS
    )


def test_sigterm_to_a_triton_under_load_fails_no_analysis_sent_before_it(
    two_tritons: list[TritonServer],
) -> None:
    stopped, other = two_tritons
    rgb = real_photo(0.3)
    image = DecodedImage(rgb, rgb.shape[1], rgb.shape[0])
    served_before = _retries("served")
    answers: list[Answer] = []

    async def scenario() -> float:
        # pick_first: the channel uses the first address while it answers, like a gateway's
        # connection that kube-proxy sent to one Triton pod.
        target = f"ipv4:{stopped.grpc_url},{other.grpc_url}"
        client = grpcclient.InferenceServerClient(target, channel_args=TRITON_CHANNEL)
        settings = Settings()
        call = Call(
            client,
            settings.triton_timeout_s,
            stopped.repository,
            retry_wait=settings.triton_retry_wait_s,
        )
        try:
            until = time.monotonic() + LOAD_BEFORE_S + LOAD_AFTER_S
            load = [_load(call, image, until, answers) for _ in range(CLIENTS)]
            clients = [asyncio.create_task(job) for job in load]
            await asyncio.sleep(LOAD_BEFORE_S)
            assert stopped.process is not None
            stopped.process.send_signal(signal.SIGTERM)
            term = time.monotonic()
            await asyncio.gather(*clients)
            return term
        finally:
            await client.close()

    term = asyncio.run(scenario())
    assert stopped.process is not None
    code = stopped.process.wait(EXIT_LIMIT_S)
    before = [a for a in answers if a.sent < term]
    in_flight = [a for a in before if a.ended > term]
    after = [a for a in answers if a.sent >= term]
    assert in_flight, "no analysis was running when Triton got SIGTERM"
    assert [a for a in before if a.error] == []
    assert after and all(a.error is None for a in after), Counter(a.error for a in after)
    assert code == 0
    retried = _retries("served") - served_before
    assert retried >= 1, "no call was retried: did Triton drop nothing?"
    print(
        f"\nSIGTERM to one of two Tritons under {CLIENTS} clients: {len(before)} analyses sent "
        f"before it ({len(in_flight)} in flight at the signal), {len(after)} after, all served; "
        f"{retried:.0f} model calls retried on the other Triton; the stopped Triton exited with "
        f"{code}; slowest analysis {max(a.ended - a.sent for a in answers):.1f} s"
    )
