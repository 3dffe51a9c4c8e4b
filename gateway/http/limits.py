"""Limits on what a client sends, as ASGI middleware around the whole app: the request body's size
(the declared Content-Length, then the bytes as they arrive, chunked or not) and the time to send
it, and the Host names the gateway answers to.

A body limit is enforced where the body is read: the first read of a body declared too large,
the read that goes past the limit and a read past the deadline raise our errors inside the route,
so they are rendered in the route's shape and only after its API key was checked. Nothing is read
before that, so nothing is spooled for a body that will be refused."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import metrics
from gateway.errors import (
    BodyTimeout,
    ImageTooLarge,
    PicmetricError,
    RequestTooLarge,
    UntrustedHost,
    size_text,
)
from gateway.http import rendering
from gateway.settings import Settings

KiB = 1024
# Room for a multipart upload's boundaries, part headers and option fields around its images.
MULTIPART_OVERHEAD = 64 * KiB
# The JSON bodies the gateway takes hold URLs (at most a batch of them, each within the stored
# column) and a few options: anything longer is not one of ours.
JSON_BODY_LIMIT = 256 * KiB
BATCH_PATH = "/v1/batch"
# Probes reach these by pod address; they answer nothing private (the readiness report and
# /metrics are on the operations port).
UNCHECKED_HOST_PATHS = frozenset({"/healthz", "/readyz"})


@dataclass(frozen=True)
class Limit:
    """The most bytes a request body may have, and the error that refuses a longer one."""

    size: int
    error: type[PicmetricError]
    message: str

    def refusal(self) -> PicmetricError:
        return self.error(self.message)


def body_limit(settings: Settings, path: str, content_type: str) -> Limit:
    """The limit on a request body to `path`: images (and a form around them) in a multipart
    upload, else JSON."""
    if not content_type.startswith("multipart/form-data"):
        return Limit(
            JSON_BODY_LIMIT,
            RequestTooLarge,
            f"A JSON request body is at most {size_text(JSON_BODY_LIMIT)}; send an image as an "
            "upload.",
        )
    limit, setting = (
        (settings.max_batch_bytes, "PICMETRIC_MAX_BATCH_BYTES")
        if path == BATCH_PATH
        else (settings.max_image_bytes, "PICMETRIC_MAX_IMAGE_BYTES")
    )
    return Limit(
        limit + MULTIPART_OVERHEAD,
        ImageTooLarge,
        f"The upload is larger than the {size_text(limit)} limit ({setting}), "
        f"plus {size_text(MULTIPART_OVERHEAD)} for the form.",
    )


class BodyLimit:
    """Every request body within `body_limit` bytes and read within `settings.body_timeout_s`."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared == "0" or not (declared or "transfer-encoding" in headers):
            await self.app(scope, receive, send)  # no body
            return
        limit = body_limit(self.settings, scope["path"], headers.get("content-type", ""))
        timeout = self.settings.body_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout
        received = 0
        done = False

        async def limited_receive() -> Message:
            nonlocal received, done
            if done:  # the body is in: later reads wait for the client to go away
                return await receive()
            if declared.isdigit() and int(declared) > limit.size:
                raise limit.refusal()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(
                    f"The request body did not arrive within {timeout:g} s "
                    "(PICMETRIC_BODY_TIMEOUT_S); send it at once, or a smaller one."
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.size:
                    raise limit.refusal()
                done = not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)


class TrustedHosts:
    """Starlette's TrustedHostMiddleware (a request for any other Host is refused, so a page on
    a rebound DNS name cannot reach the gateway), answering in our error shape, and leaving the
    health and metrics paths to anyone."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.check = TrustedHostMiddleware(self._trusted, allowed_hosts, www_redirect=False)

    async def _trusted(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["picmetric.trusted_host"] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNCHECKED_HOST_PATHS:
            await self.app(scope, receive, send)
            return

        async def send_or_refuse(message: Message) -> None:
            if scope.get("picmetric.trusted_host"):
                await send(message)
            elif message["type"] == "http.response.start":  # the check's plain-text 400
                host = Headers(scope=scope).get("host", "")
                error = UntrustedHost(
                    f"This gateway does not answer to the host name {host[:100]!r}; "
                    "its operator can add it to PICMETRIC_ALLOWED_HOSTS."
                )
                metrics.ERRORS.labels(error.errortype).inc()
                body = rendering.v1_error(error.errortype, str(error))
                await JSONResponse(body, status_code=error.status_code)(scope, receive, send)

        await self.check(scope, receive, send_or_refuse)


def names_no_domain(host: str) -> bool:
    """Whether a Host header names an IP address or a name of one label (`localhost`, a compose
    service such as `gateway`): no page on a rebound DNS name sends one, as such names have dots."""
    try:
        name = urlsplit(f"//{host}").hostname or ""
    except ValueError:  # e.g. an unclosed [
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return bool(name) and "." not in name
    return True


class OperationsHosts:
    """The operations port's Host check (it has no API key): addresses and one-label names, as
    Prometheus scrapes a pod by address and a compose service by name, and the trusted names;
    others get Starlette's 400, so a page on a rebound DNS name cannot read the port from a
    browser on the gateway's host."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.named = TrustedHostMiddleware(app, allowed_hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and names_no_domain(Headers(scope=scope).get("host", "")):
            await self.app(scope, receive, send)
        else:
            await self.named(scope, receive, send)
