"""Hostile clients and upstreams on loopback: raw sockets that send requests as an attacker would
(declared lengths, slow bodies, chunked floods), and an image server in a thread whose answers
trickle, arrive compressed, or are counted."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import brotli


def server_pid(base: str) -> int:
    """The process listening at `base` that `gateway_process` started (found by its --port)."""
    port = str(urlsplit(base).port)
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gateway" in args and b"--port" in args and port.encode() in args:
            return int(proc.name)
    raise LookupError(f"no gateway process on port {port}")


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise LookupError("no VmHWM")


def connect(base: str, timeout: float = 10) -> socket.socket:
    """A TCP connection to the gateway at `base` (http://host:port)."""
    parts = urlsplit(base)
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def send_head(
    sock: socket.socket,
    base: str,
    path: str,
    headers: dict[str, str],
    method: str = "POST",
) -> None:
    """A request's line and headers, and nothing more."""
    host = urlsplit(base).netloc
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())


def read_status(sock: socket.socket) -> tuple[int, str]:
    """The status and the rest of what the server sent, until it closes or stops sending."""
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = [
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if length and len(body) >= length[0]:
                break
    except (ConnectionResetError, TimeoutError):
        if not data:
            raise
    return int(data.split(b" ", 2)[1]), data.decode(errors="replace")


class Upstream:
    """What the hostile image server serves, and what it was asked."""

    def __init__(self, photo: bytes) -> None:
        self.photo = photo
        self.hits: Counter[str] = Counter()
        self.headers: dict[str, dict[str, str]] = {}
        self.stop = threading.Event()
        bomb = bytes(64 << 20)  # 64 MiB of zeros
        self.encoded = {
            "gzip": gzip.compress(bomb, compresslevel=9),
            "br": brotli.compress(bomb, quality=1),
        }


def _handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            upstream.hits[path] += 1
            upstream.headers[path] = dict(self.headers.items())
            if path.startswith("/photo"):
                self._send(upstream.photo)
            elif path.startswith("/bomb-"):
                encoding = path.removeprefix("/bomb-").removesuffix(".jpg")
                self._send(upstream.encoded[encoding], {"Content-Encoding": encoding})
            elif path.startswith("/trickle"):
                self._trickle()
            elif path.startswith("/redirect-to-trickle"):
                self.send_response(302)
                self.send_header("Location", "/trickle.jpg")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._send(b"not here", status=404)

        def _send(
            self, body: bytes, headers: dict[str, str] | None = None, status: int = 200
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _trickle(self) -> None:
            """A JPEG's first bytes, one every 0.3 s, for as long as anyone listens."""
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                while not upstream.stop.is_set():
                    self.wfile.write(b"\xff")
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                pass

    return Handler


@contextmanager
def hostile_upstream(photo: bytes) -> Iterator[tuple[str, Upstream]]:
    """The hostile image server on a free loopback port; yields (base URL, its state)."""
    upstream = Upstream(photo)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", upstream
    finally:
        upstream.stop.set()
        server.shutdown()
        server.server_close()
