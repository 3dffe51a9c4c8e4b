"""One trace per analysis, with OpenTelemetry: the stages' spans, the context sent on to Triton,
the trace id an answer and a log line carry.

Configured only by the ecosystem's own OTEL_* variables, which the SDK reads (README, Traces):
tracing is on when OTEL_TRACES_EXPORTER names an exporter (`otlp`, OTLP over HTTP/protobuf, or
`console`), or, with it unset, when an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). Otherwise nothing is installed: TRACER is the API's no-op
tracer, no span is recorded or exported, and no context is sent to Triton."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context, trace
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

SERVICE_NAME = "picmetric-gateway"  # unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES says
EXPORTERS = ("otlp", "console", "none")

# A proxy: the no-op tracer until `configure` installs the SDK's provider.
TRACER = trace.get_tracer("picmetric.gateway")

_installed = False
# What goes to Triton: the W3C trace context alone (traceparent, tracestate), never a client's
# baggage, which the default propagators would pass on.
_TO_TRITON = TraceContextTextMapPropagator()


class TracingConfigError(ValueError):
    """The OTEL_* variables ask for what the gateway cannot export."""


def exporter_name(environ: Mapping[str, str]) -> str | None:
    """The exporter the OTEL_* variables ask for; None: tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    name = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    name = name or ("otlp" if endpoint else "none")
    if name not in EXPORTERS:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={name!r} is not one the gateway has: use otlp, console or none."
        )
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if name == "otlp" and protocol.strip() not in ("", "http/protobuf"):
        raise TracingConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: the gateway exports OTLP over "
            "http/protobuf only (as Triton does); point it at the receiver's HTTP port (4318)."
        )
    return None if name == "none" else name


def configure(environ: Mapping[str, str] = os.environ) -> bool:
    """Install the SDK's tracer provider once per process when the OTEL_* variables ask for
    traces (the sampler from OTEL_TRACES_SAMPLER and _ARG, the batch processor's OTEL_BSP_*, the
    endpoint and headers from OTEL_EXPORTER_OTLP_*: all read by the SDK). Returns whether
    tracing is on."""
    global _installed
    name = exporter_name(environ)
    if name is None:
        return False
    if _installed:
        return True
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    exporter: SpanExporter
    if name == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _installed = True
    return True


def recording() -> bool:
    """Whether the current span is recorded (tracing on and this trace sampled)."""
    return trace.get_current_span().is_recording()


def trace_id() -> str | None:
    """The current trace's id (32 hex digits) when its spans are recorded; None otherwise."""
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    return trace.format_trace_id(span.get_span_context().trace_id)


def exemplar() -> dict[str, str] | None:
    """A latency observation's exemplar (OpenMetrics): the trace it was measured in, when traced;
    Grafana links it to the trace."""
    found = trace_id()
    return None if found is None else {"trace_id": found}


def headers() -> dict[str, str] | None:
    """The W3C trace context to send with a call (Triton continues the trace: with
    `--trace-config rate=0` it traces exactly the calls that carry one), or None when the current
    span is not recorded, so an unsampled analysis costs Triton no trace."""
    if not recording():
        return None
    carrier: dict[str, str] = {}
    _TO_TRITON.inject(carrier)
    return carrier


@contextmanager
def span(
    name: str,
    attributes: Mapping[str, str | int] | None = None,
    client: bool = False,
) -> Iterator[Span]:
    """A child span of the current one around the block (an exception is recorded on it);
    `client`: a call to another service, whose spans continue the trace."""
    kind = SpanKind.CLIENT if client else SpanKind.INTERNAL
    with TRACER.start_as_current_span(name, kind=kind, attributes=attributes) as made:
        yield made


def traceparent() -> str | None:
    """The current span's W3C traceparent when it is recorded (kept with a job, so that its
    photos' traces link to the submit's); None otherwise."""
    carrier = headers()
    return None if carrier is None else carrier.get("traceparent")


def linked_root(
    name: str,
    attributes: Mapping[str, str | int] | None = None,
    link_to: str | None = None,
) -> Span:
    """A span that starts a trace of its own, linked to the current span (a batch's photo: one
    trace per photo, each linked to the batch's) or to the span of the traceparent `link_to` (a
    job's photo, linked to the submit's). The caller ends it."""
    if link_to is not None:
        parent = _TO_TRITON.extract({"traceparent": link_to})
        linked = trace.get_current_span(parent).get_span_context()
    else:
        linked = trace.get_current_span().get_span_context()
    links = [Link(linked)] if linked.is_valid else []
    return TRACER.start_span(name, context=context.Context(), links=links, attributes=attributes)


def use(made: Span) -> trace.Span:
    """`with use(span):` makes `made` the current span in the block, without ending it."""
    return trace.use_span(made, end_on_exit=False)  # type: ignore[return-value]
