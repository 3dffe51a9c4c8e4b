"""Triton's OpenTelemetry flags follow the standard OTEL_* variables as the gateway does."""

from __future__ import annotations

from core.triton_trace import otlp_traces_url, trace_args


def test_triton_exports_to_the_otlp_endpoint_by_the_spec() -> None:
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318/"}
    assert otlp_traces_url(base) == "http://jaeger:4318/v1/traces"
    traces = {**base, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://tempo:4318/otlp/v1/traces"}
    assert otlp_traces_url(traces) == "http://tempo:4318/otlp/v1/traces"
    args = trace_args(base)
    assert "--trace-config=mode=opentelemetry" in args
    assert "--trace-config=rate=0" in args  # only what the gateway sampled
    assert args[-1] == "--trace-config=opentelemetry,url=http://jaeger:4318/v1/traces"


def test_triton_traces_nothing_unless_an_otlp_endpoint_is_named() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}
    assert trace_args({}) == []
    assert trace_args({**endpoint, "OTEL_SDK_DISABLED": "true"}) == []
    assert trace_args({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) == []
    assert trace_args({**endpoint, "OTEL_TRACES_EXPORTER": "console"}) == []
