"""Real HTTP servers on 127.0.0.1: one serving a folder, with byte ranges (for download resume);
a webhook receiver answering scripted statuses."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class RangeRequestHandler(SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler plus `Range: bytes=N-`, and a request log for assertions."""

    requests: list[dict[str, str]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append({"path": self.path, **dict(self.headers.items())})
        header = self.headers.get("Range", "")
        path = Path(self.translate_path(self.path))
        if not header.startswith("bytes=") or not path.is_file():
            super().do_GET()
            return
        start = int(header.removeprefix("bytes=").split("-")[0])
        data = path.read_bytes()
        if start >= len(data):  # as real servers answer a range past the end
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = data[start:]
        self.send_response(206)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/*")
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serve_directory(root: Path) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Serve `root` on a free loopback port; yields (base URL, request log)."""
    log: list[dict[str, str]] = []
    handler = type("Handler", (RangeRequestHandler,), {"requests": log})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()


class WebhookReceiver(BaseHTTPRequestHandler):
    """Answers each POST with the next of `statuses` (the last one again once they run out),
    after `delay` seconds; records every POST's arrival time, headers and body."""

    statuses: list[int]
    delay: float
    received: list[tuple[float, dict[str, str], bytes]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((time.monotonic(), dict(self.headers.items()), body))
        status = self.statuses[min(len(self.received), len(self.statuses)) - 1]
        time.sleep(self.delay)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def serve_webhooks(
    statuses: list[int], delay: float = 0.0
) -> Iterator[tuple[str, list[tuple[float, dict[str, str], bytes]]]]:
    """A webhook receiver on a free loopback port; yields (its URL, what it received)."""
    received: list[tuple[float, dict[str, str], bytes]] = []
    attributes = {"statuses": statuses, "delay": delay, "received": received}
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (WebhookReceiver,), attributes))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/picmetric?token=s3cret", received
    finally:
        server.shutdown()
        server.server_close()
