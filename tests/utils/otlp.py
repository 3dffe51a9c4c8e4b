"""An OTLP/HTTP trace receiver on loopback: what the gateway and Triton export, decoded with the
OpenTelemetry project's own protobuf messages (`opentelemetry-proto`), from protobuf or from
OTLP/JSON (Triton 2.51 sends JSON)."""

from __future__ import annotations

import base64
import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str  # hex, as in a traceparent
    span_id: str
    parent_id: str  # "" for a trace's root
    attributes: dict[str, object] = field(hash=False)
    links: tuple[str, ...] = ()  # the linked spans' trace ids
    events: tuple[str, ...] = ()  # the span's events' names, in order (Triton's timestamps)


# OTLP/JSON writes ids in hex, where protobuf's JSON mapping of bytes is base64.
_IDS = {"traceId", "spanId", "parentSpanId"}


def _ids_as_base64(value: object) -> object:
    if isinstance(value, dict):
        return {
            key: base64.b64encode(bytes.fromhex(item)).decode()
            if key in _IDS and isinstance(item, str)
            else _ids_as_base64(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_ids_as_base64(item) for item in value]
    return value


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _spans(request: ExportTraceServiceRequest) -> Iterator[ReceivedSpan]:
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield ReceivedSpan(
                    service=str(resource.get("service.name", "")),
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_id=span.parent_span_id.hex(),
                    attributes={a.key: _value(a.value) for a in span.attributes},
                    links=tuple(link.trace_id.hex() for link in span.links),
                    events=tuple(event.name for event in span.events),
                )


class OtlpReceiver:
    """Spans received so far (`spans`), and the URL to export to (`endpoint`, the base that
    OTEL_EXPORTER_OTLP_ENDPOINT takes; the traces go to its /v1/traces)."""

    def __init__(self, port: int) -> None:
        self.endpoint = f"http://127.0.0.1:{port}"
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.refused: list[str] = []  # what could not be decoded: its type and first bytes
        self._lock = threading.Lock()

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def add(self, body: bytes, content_type: str) -> None:
        if content_type.startswith("application/json"):
            message = json_format.ParseDict(
                _ids_as_base64(json.loads(body)), ExportTraceServiceRequest()
            )
        else:
            message = ExportTraceServiceRequest.FromString(body)
        with self._lock:
            self.requests += 1
            self.spans.extend(_spans(message))


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP (protobuf) receiver on a free loopback port, in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = OtlpReceiver(server.server_address[1])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as OTLP exporters expect

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self._body()
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            kind = self.headers.get("Content-Type", "")
            try:
                receiver.add(body, kind)
            except (DecodeError, json_format.ParseError, ValueError):
                receiver.refused.append(f"{kind}: {body[:80]!r}")
                self.send_error(400)
                return
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
