"""Bulk jobs traced (issue 31): the worker makes each photo's analysis a trace of its own, linked
to the trace of the submit that made the job, as /v1/batch links its photos to the batch. The
gateway and a `picmetric worker` export to a local OTLP/HTTP receiver (tests/utils/otlp.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway import tracing
from picmetric.triton_server import TritonServer
from tests.gateway.jobs.conftest import JobsEnv, wait_for_job, worker_process
from tests.utils.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.utils.redis import redis_servers
from tests.utils.services import gateway_env, gateway_process, wait_until

pytestmark = pytest.mark.integration

EXPORT_FAST = {"OTEL_BSP_SCHEDULE_DELAY": "100"}  # spans leave every 100 ms, not every 5 s


@pytest.fixture(scope="module")
def traced_jobs(
    triton: TritonServer, model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[JobsEnv, OtlpReceiver]]:
    """A gateway with Redis and SQLite whose spans, and its workers', go to one receiver."""
    folder = tmp_path_factory.mktemp("traced-jobs")
    with otlp_receiver() as receiver, redis_servers(appendonly=False) as redis:
        env = gateway_env(
            triton,
            model_repository,
            f"sqlite:///{folder / 'analyses.db'}",
            redis_url=redis.url,
            allow_private_urls="true",  # the photos' server, on loopback
        )
        env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **EXPORT_FAST})
        with gateway_process(env, folder / "gateway.log") as url:
            yield JobsEnv(url, env, redis, "", folder, {}), receiver


def test_each_job_photo_is_a_trace_linked_to_the_submits(
    traced_jobs: tuple[JobsEnv, OtlpReceiver], photo_server: str
) -> None:
    jobs, receiver = traced_jobs
    client_trace = secrets.token_hex(16)
    headers = {"traceparent": f"00-{client_trace}-{secrets.token_hex(8)}-01"}
    urls = [f"{photo_server}/{name}.jpg" for name in ("chelsea", "coffee")]
    body = {"source": {"urls": urls}, "models": ["resnet50"]}
    with httpx.Client(base_url=jobs.url, timeout=60) as client:
        job_id = client.post("/v1/jobs", json=body, headers=headers).raise_for_status().json()["id"]
        with worker_process(jobs, "traced"):
            assert wait_for_job(client, job_id, 60)["state"] == "done"

            def photo_roots() -> list[ReceivedSpan]:
                return [
                    s
                    for s in receiver.received()
                    if s.name == "job photo" and s.attributes.get("picmetric.job_id") == job_id
                ]

            wait_until(lambda: len(photo_roots()) == 2, 20, "the photos' root spans")
    roots = {s.attributes["picmetric.job_position"]: s for s in photo_roots()}
    assert set(roots) == {0, 1}
    spans = receiver.received()
    submit = [s for s in spans if s.trace_id == client_trace]
    assert "POST /v1/jobs" in {s.name for s in submit}  # the client's trace, continued
    photo_traces = {root.trace_id for root in roots.values()}
    assert len(photo_traces) == 2 and client_trace not in photo_traces
    for root in roots.values():
        assert root.parent_id == "" and root.links == (client_trace,)
        assert root.service == tracing.SERVICE_NAME
        inside = {s.name: s for s in spans if s.trace_id == root.trace_id}
        assert {"analysis", "fetch", "decode", "triton resnet50"} <= set(inside)
        assert inside["analysis"].parent_id == root.span_id
