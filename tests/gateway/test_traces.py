"""One trace per analysis, from the client through the gateway into Triton and the cascade:
`picmetric serve` given only the OTEL_* variables runs a real Triton in OpenTelemetry mode and
the gateway, both exporting to a local OTLP/HTTP receiver (tests/utils/otlp.py); and with
tracing off, nothing is made and the answer is the same."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace

from gateway import tracing
from gateway.http.bodies import INTAKE
from gateway.main import _trace_requests, create_app
from picmetric.triton_server import TritonPorts
from tests.deploy.test_compose import SERVICES as COMPOSE_SERVICES
from tests.gateway.conftest import FRESH, Gateway, post
from tests.utils.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.utils.ports import free_port
from tests.utils.prometheus import prometheus_server
from tests.utils.services import wait_until

MODELS = ["resnet50", "yolov3", "mtcnn"]
# Spans leave both processes in batches: every 100 ms rather than every 5 s.
EXPORT_FAST = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
TRITON_TRIES = 5


@dataclass(frozen=True)
class Traced:
    gateway: Gateway
    receiver: OtlpReceiver
    triton_grpc: str
    log: Path  # serve's: the gateway's lines among Triton's supervisor's


@pytest.fixture(scope="module")
def traced(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    """`picmetric serve` (the local Triton and the gateway in one command) configured only by the
    standard OTEL_* variables: both export to one receiver."""
    folder = tmp_path_factory.mktemp("traced")
    triton = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    port, ops_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "picmetric",
        "serve",
        "--no-jobs",
        *("--repository", str(model_repository), "--port", str(port)),
        *("--http-port", str(triton.http), "--grpc-port", str(triton.grpc)),
        *("--metrics-port", str(triton.metrics)),
    ]
    database_url = f"sqlite:///{folder / 'analyses.db'}"
    log = folder / "serve.log"
    with otlp_receiver() as receiver:
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            **EXPORT_FAST,
            "PICMETRIC_MODEL_REPOSITORY": str(model_repository),
            "PICMETRIC_DATABASE_URL": database_url,
            "PICMETRIC_OPS_PORT": str(ops_port),
            "PICMETRIC_ALLOW_PRIVATE_URLS": "true",
        }
        with log.open("wb") as out:
            serve = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: _ready(f"{url}/readyz"), 240, "serve's readiness", log)
            gateway = Gateway(url, database_url, "", f"http://127.0.0.1:{ops_port}")
            yield Traced(gateway, receiver, f"127.0.0.1:{triton.grpc}", log)
        finally:
            serve.terminate()
            serve.wait(60)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).is_success
    except httpx.TransportError:
        return False


def _spans(receiver: OtlpReceiver, trace_id: str) -> list[ReceivedSpan]:
    return [s for s in receiver.received() if s.trace_id == trace_id]


def _trace(
    receiver: OtlpReceiver, trace_id: str, until: set[str], timeout: float = 30
) -> list[ReceivedSpan]:
    """The trace's spans once spans named `until` have all arrived (the test fails otherwise)."""
    try:
        wait_until(lambda: until <= {s.name for s in _spans(receiver, trace_id)}, timeout, "")
    except pytest.fail.Exception:
        missing = sorted(until - {s.name for s in _spans(receiver, trace_id)})
        pytest.fail(
            f"missing spans {missing} of trace {trace_id}; {receiver.requests} exports received, "
            f"undecodable: {receiver.refused[:2]}"
        )
    time.sleep(0.5)  # the last batches of both exporters
    return _spans(receiver, trace_id)


def _ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[str]:
    """The names of a span's parents, nearest first, as far as the trace holds them."""
    names = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        names.append(span.name)
    return names


@pytest.mark.integration
def test_one_analysis_is_one_trace_from_the_client_into_triton_and_the_cascade(
    traced: Traced, photo_server: str
) -> None:
    """Triton 2.51 now and then exports none of one request's spans, or the cascade's only much
    later (seen on direct gRPC calls too, with nothing in its log: 2 of 24 traces in one run, 0
    in others; a CI run missed `mtcnn`'s in three analyses in a row): the gateway's spans must all
    be there every time, Triton's complete for one of TRITON_TRIES analyses, whichever (an
    earlier analysis's may arrive during a later one)."""
    triton_models = {"resnet50", "yolov3", "mtcnn"}
    wanted = {INTAKE, "analysis", "fetch", "decode", "quality", "store"}
    wanted |= {f"triton {model}" for model in triton_models}
    # The ensemble's steps; the cascade's BLS requests (astronaut.jpg has a face: all three run).
    steps = {"yolov3_backbone": "yolov3", "yolov3_postprocess": "yolov3"}
    steps |= {f"mtcnn_{net}": "mtcnn" for net in ("pnet", "rnet", "onet")}
    until = wanted | triton_models | set(steps)
    body = {"url": f"{photo_server}/astronaut.jpg", "models": MODELS}
    sent: list[tuple[str, str]] = []  # each analysis's trace id and the client's span id

    def complete() -> tuple[str, str] | None:
        for trace_id, span_id in sent:
            if until <= {s.name for s in _spans(traced.receiver, trace_id)}:
                return trace_id, span_id
        return None

    found = None
    for attempt in range(1, TRITON_TRIES + 1):
        client_trace, client_span = secrets.token_hex(16), secrets.token_hex(8)
        headers = {**FRESH, "traceparent": f"00-{client_trace}-{client_span}-01"}
        answer = post(traced.gateway, "/v1/analyze", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["trace_id"] == client_trace  # the client's trace, continued
        _trace(traced.receiver, client_trace, wanted)
        sent.append((client_trace, client_span))
        deadline = time.monotonic() + (30 if attempt == TRITON_TRIES else 10)
        while (found := complete()) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if found is not None:
            break
    if found is None:
        missing = sorted(until - {s.name for s in _spans(traced.receiver, sent[-1][0])})
        pytest.fail(f"no analysis of {len(sent)} had all its spans; the last missed {missing}")
    client_trace, client_span = found
    spans = _trace(traced.receiver, client_trace, until)
    by_id = {s.span_id: s for s in spans}
    gateway = [s for s in spans if s.service == tracing.SERVICE_NAME]
    (server,) = [s for s in gateway if s.parent_id == client_span]
    assert server.name == "POST /v1/analyze"
    for span in gateway:
        assert span is server or server.name in _ancestors(span, by_id), span
    by_name = {s.name: s for s in gateway}
    for stage in (INTAKE, "fetch", "analysis"):  # the body read, then the photo's bytes
        assert by_name[stage].parent_id == server.span_id, stage
    for stage in ("decode", "quality", "store", *(f"triton {model}" for model in triton_models)):
        assert "analysis" in _ancestors(by_name[stage], by_id), stage
    calls = {s.attributes["picmetric.model"]: s for s in gateway if s.name.startswith("triton ")}
    assert set(calls) == triton_models
    for call in calls.values():
        assert call.attributes["server.address"] == traced.triton_grpc  # the replica's

    # Triton's spans: each model's request under the gateway's call; the ensemble's steps and the
    # cascade's BLS requests under their model's request.
    triton = [s for s in spans if s.service != tracing.SERVICE_NAME]
    assert triton, "Triton exported no span of the trace"
    for span in triton:
        assert span.parent_id in by_id, f"{span.name}: its parent is not in the trace"
    for model in triton_models:
        (request,) = [s for s in triton if s.attributes.get("triton.model_name") == model]
        assert _ancestors(request, by_id)[:2] == ["InferRequest", calls[model].name]
    for step, model in steps.items():
        inside = [s for s in triton if s.attributes.get("triton.model_name") == step]
        assert inside, f"no span of {step}"
        for span in inside:
            assert _ancestors(span, by_id)[:3] == [model, "InferRequest", calls[model].name]
    # Where a request's time went in Triton: its queue (the model span's timestamps) and its
    # compute (a span under it).
    for model in ("resnet50", "yolov3_backbone", "mtcnn"):
        for span in [s for s in triton if s.attributes.get("triton.model_name") == model]:
            assert "QUEUE_START" in span.events, (model, span.events)
            computes = [s for s in triton if s.parent_id == span.span_id and s.name == "compute"]
            assert computes, f"no compute span under {model}"
            for compute in computes:
                assert {"COMPUTE_START", "COMPUTE_END"} <= set(compute.events), compute.events


@pytest.mark.integration
def test_a_batch_traces_each_photo_linked_to_the_batch(traced: Traced, photo_server: str) -> None:
    urls = [f"{photo_server}/{name}.jpg" for name in ("chelsea", "coffee")]
    answer = post(traced.gateway, "/v1/batch", json={"urls": urls, "models": ["resnet50"]})
    assert answer.status_code == 200, answer.text
    photos = [item["analysis"]["trace_id"] for item in answer.json()["results"]]
    assert len(set(photos)) == 2
    roots = [_trace(traced.receiver, photo, {"photo", "analysis"}) for photo in photos]
    batch_traces = {
        link for spans in roots for span in spans if span.name == "photo" for link in span.links
    }
    (batch,) = batch_traces
    assert batch not in photos
    _trace(traced.receiver, batch, {"POST /v1/batch"})


@pytest.mark.integration
def test_an_uploads_intake_holds_its_bytes_arriving(traced: Traced, photo_server: str) -> None:
    """An upload has no fetch: its bytes arrive with the request, read inside `intake`."""
    photo = httpx.get(f"{photo_server}/coffee.jpg").raise_for_status().content
    client_trace, client_span = secrets.token_hex(16), secrets.token_hex(8)
    headers = {**FRESH, "traceparent": f"00-{client_trace}-{client_span}-01"}
    files = {"file": ("coffee.jpg", photo, "image/jpeg")}
    answer = post(
        traced.gateway, "/v1/analyze", files=files, data={"models": "resnet50"}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    spans = _trace(traced.receiver, client_trace, {INTAKE, "analysis", "store"})
    (server,) = [s for s in spans if s.parent_id == client_span]
    (intake,) = [s for s in spans if s.name == INTAKE]
    assert intake.parent_id == server.span_id
    assert "fetch" not in {s.name for s in spans}


@pytest.mark.integration
def test_the_seeds_api_is_traced_alike(traced: Traced, photo_server: str) -> None:
    client_trace, client_span = secrets.token_hex(16), secrets.token_hex(8)
    headers = {**FRESH, "traceparent": f"00-{client_trace}-{client_span}-01"}
    body = {"url": f"{photo_server}/coffee.jpg"}
    answer = post(traced.gateway, "/api", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    spans = _trace(traced.receiver, client_trace, {INTAKE, "fetch", "analysis"})
    (server,) = [s for s in spans if s.parent_id == client_span]
    for stage in (INTAKE, "fetch", "analysis"):
        (span,) = [s for s in spans if s.name == stage]
        assert span.parent_id == server.span_id, stage


@pytest.mark.integration
def test_latency_histograms_carry_the_trace_as_an_exemplar(
    traced: Traced, photo_server: str
) -> None:
    """In OpenMetrics (what Prometheus asks for), a traced analysis's latencies link its trace;
    the plain text format stays as it was."""
    body = {"url": f"{photo_server}/coffee.jpg", "models": ["resnet50"]}
    answer = post(traced.gateway, "/v1/analyze", json=body, headers=FRESH).json()
    openmetrics = "application/openmetrics-text; version=1.0.0"
    scrape = httpx.get(f"{traced.gateway.ops_url}/metrics", headers={"Accept": openmetrics})
    assert scrape.headers["content-type"].startswith("application/openmetrics-text")
    exemplar = f'# {{trace_id="{answer["trace_id"]}"}}'
    for histogram in ("picmetric_stage_duration_seconds", "picmetric_inference_duration_seconds"):
        lines = [line for line in scrape.text.splitlines() if line.startswith(histogram)]
        assert any(exemplar in line for line in lines), histogram
    assert "trace_id" not in httpx.get(f"{traced.gateway.ops_url}/metrics").text


@pytest.mark.integration
def test_prometheus_as_compose_runs_it_keeps_the_exemplars(
    traced: Traced, photo_server: str, tmp_path: Path
) -> None:
    """Prometheus with compose's feature flags (exemplar storage), scraping the traced gateway,
    answers a traced analysis's latency with its trace id: what Grafana's exemplar links read."""
    flags = [f for f in COMPOSE_SERVICES["prometheus"]["command"] if f.startswith("--enable-")]
    targets = {"gateway": urlsplit(traced.gateway.ops_url).netloc}
    with prometheus_server(targets, tmp_path, flags) as prometheus:
        body = {"url": f"{photo_server}/chelsea.jpg", "models": ["resnet50"]}
        answer = post(traced.gateway, "/v1/analyze", json=body, headers=FRESH).json()

        def exemplar_traces() -> set[object]:
            now = time.time()
            query = {"query": "picmetric_stage_duration_seconds_bucket"}
            query |= {"start": str(now - 600), "end": str(now + 60)}
            found = httpx.get(f"{prometheus}/api/v1/query_exemplars", params=query).json()
            series = found.get("data") or []
            return {e["labels"].get("trace_id") for s in series for e in s["exemplars"]}

        wait_until(lambda: answer["trace_id"] in exemplar_traces(), 30, "the exemplar")


@pytest.mark.integration
def test_a_log_line_carries_its_trace_id(traced: Traced, photo_server: str) -> None:
    client_trace = secrets.token_hex(16)
    headers = {"traceparent": f"00-{client_trace}-{secrets.token_hex(8)}-01"}
    body = {"url": f"{photo_server}/notes.txt"}  # refused, and logged once
    answer = post(traced.gateway, "/v1/analyze", json=body, headers=headers)
    assert answer.status_code == 415
    lines = traced.log.read_text().splitlines()
    assert any(
        "unsupported_image" in line and f"[trace_id={client_trace}]" in line for line in lines
    )


def test_tracing_off_makes_no_span(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without OTEL_* variables nothing is installed: the API's no-op tracer, no exporter, no
    request instrumentation in the app."""
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    assert not _instrumented(create_app())
    assert _instrumented(_instrument(create_app()))  # the check sees an instrumented app
    assert tracing.configure({}) is False
    off = {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    assert tracing.configure(off) is False
    assert not isinstance(trace.get_tracer_provider(), _sdk_provider())
    with tracing.span("decode") as span:
        assert not span.is_recording()
        assert tracing.trace_id() is None and tracing.headers() is None


def _instrumented(app: FastAPI) -> bool:
    """Whether the app makes a server span per request (the mark the instrumentation leaves)."""
    return bool(getattr(app, "_is_instrumented_by_opentelemetry", False))


def _instrument(app: FastAPI) -> FastAPI:
    _trace_requests(app)
    return app


def _sdk_provider() -> type:
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider


@pytest.mark.integration
@pytest.mark.parametrize("gateway", ["sqlite"], indirect=True)
def test_tracing_off_leaves_the_answer_unchanged(
    gateway: Gateway, traced: Traced, photo_server: str
) -> None:
    """The same analysis by a gateway without OTEL_* variables (a client's traceparent
    ignored) and by one that traces: the same answer but the trace id."""
    body = {"url": f"{photo_server}/rocket.jpg", "models": MODELS}
    headers = {**FRESH, "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"}
    plain = post(gateway, "/v1/analyze", json=body, headers=headers).json()
    with_trace = post(traced.gateway, "/v1/analyze", json=body, headers=headers).json()
    assert "trace_id" not in plain
    assert with_trace.pop("trace_id")
    for answer in (plain, with_trace):
        for key in ("id", "created_at", "timings_ms"):
            answer.pop(key)
        for model in answer["models"]:
            model.pop("latency_ms")
    assert plain == with_trace
