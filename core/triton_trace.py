"""Triton's OpenTelemetry flags, from the same standard OTEL_* variables the gateway's tracing
reads (gateway/tracing.py), so `picmetric serve` traces both or neither.

Triton 2.51 (checked on the local binary) exports OTLP over HTTP only, to `opentelemetry,url=`.
A request that carries a W3C trace context is traced whatever the `rate` (Triton's trace docs,
"OpenTelemetry Context Propagation", since 24.01); with `rate=0` it traces exactly those. So the
gateway's sampler decides for both: a sampled analysis sends its context with each model's call
(`gateway.tracing.headers`), an unsampled one sends none and costs Triton no trace.
"""

from __future__ import annotations

from collections.abc import Mapping

# Traced: the requests that carry a context, at the level with Triton's queue and compute times.
TRACE_SETTINGS = ("mode=opentelemetry", "level=TIMESTAMPS", "rate=0", "count=-1")


def otlp_traces_url(environ: Mapping[str, str]) -> str | None:
    """Where OTLP/HTTP traces go, by the OpenTelemetry spec: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    as it is, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces; None when neither is set, or
    tracing is disabled (OTEL_SDK_DISABLED, or OTEL_TRACES_EXPORTER other than otlp)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() not in ("", "otlp"):
        return None
    if url := environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return url
    if base := environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return base.rstrip("/") + "/v1/traces"
    return None


def trace_args(environ: Mapping[str, str]) -> list[str]:
    """Triton's flags that export its spans to the OTLP endpoint the variables name; none when
    they name none (Triton then traces nothing)."""
    url = otlp_traces_url(environ)
    if url is None:
        return []
    return [
        *(f"--trace-config={setting}" for setting in TRACE_SETTINGS),
        f"--trace-config=opentelemetry,url={url}",
    ]
