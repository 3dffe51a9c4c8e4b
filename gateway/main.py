"""Builds the FastAPI apps: the API (services in the lifespan, routers, errors mapped to HTTP in
one place, request metrics) and the operations app beside it (/metrics, the readiness report),
and the ASGI app that serves each on its own listening port of one uvicorn server."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import logs, metrics, tracing
from gateway.errors import HTTP_ERROR, UNEXPECTED, InvalidRequest, PicmetricError
from gateway.http import docs, rendering
from gateway.http.limits import BodyLimit, OperationsHosts, TrustedHosts
from gateway.http.routes import health, jobs, page, seed, v1
from gateway.jobs.interactive import announcing
from gateway.jobs.queue import JobQueue
from gateway.services import Services
from gateway.settings import Settings
from gateway.store.migrate import prepare_schema

log = logging.getLogger("gateway")


def _error_response(
    request: Request,
    status: int,
    errortype: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The error in the shape of the route that failed (its `render_error`), /v1's by default."""
    metrics.ERRORS.labels(errortype).inc()
    route = request.scope.get("route")
    render: rendering.ErrorRenderer = getattr(route, "render_error", rendering.v1_error)
    return JSONResponse(render(errortype, message), status_code=status, headers=headers)


async def _picmetric_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PicmetricError)
    cause = f" (cause: {exc.__cause__!r})" if exc.__cause__ else ""
    log.warning(
        "%s %s -> %d %s: %s%s",
        request.method,
        request.url.path,
        exc.status_code,
        exc.errortype,
        exc,
        cause,
    )
    return _error_response(request, exc.status_code, exc.errortype, str(exc), exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
        for e in exc.errors()
    )
    error = InvalidRequest(f"Invalid request: {problems}.")
    return await _picmetric_error(request, error)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    errortype = "not_found" if exc.status_code == 404 else HTTP_ERROR
    return _error_response(request, exc.status_code, errortype, str(exc.detail), exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed unexpectedly", request.method, request.url.path)
    error = PicmetricError(UNEXPECTED)
    return _error_response(request, error.status_code, error.errortype, str(error))


async def _count_requests(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    metrics.IN_FLIGHT.inc()
    started = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.IN_FLIGHT.dec()
        metrics.REQUESTS.labels(route, str(status)).inc()
        seconds = time.perf_counter() - started
        metrics.REQUEST_SECONDS.labels(route).observe(seconds, tracing.exemplar())


def create_app(settings: Settings | None = None, schema_prepared: bool = False) -> FastAPI:
    """The app; its start-up prepares the database schema unless the caller already did
    (`schema_prepared`, as `picmetric gateway` and `serve` do before any server starts)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logs.install(secrets=settings.api_keys)
        if not schema_prepared:
            prepare_schema(settings.database_url, upgrade=settings.migrate_on_start)
        services = Services.create(settings)
        app.state.services = services
        # Jobs are queued in Redis; without it POST /v1/jobs is 503 queue_unavailable.
        app.state.job_queue = JobQueue(settings) if settings.redis_url else None
        await services.start()
        await services.catalog.refresh(services.triton)
        log.info(
            "Gateway ready; Triton at %s, models ready: %s",
            settings.triton_grpc_url,
            ", ".join(services.catalog.ready_models()) or "none yet",
        )
        try:
            # Job workers yield the cores while this gateway answers its clients.
            async with announcing(settings, services.admission):
                yield
        finally:
            if app.state.job_queue is not None:
                app.state.job_queue.close()
            await services.close()

    app = FastAPI(
        title="Picmetric inference gateway",
        summary="What is in a photo: ImageNet labels, COCO objects with boxes, faces.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # docs.add_docs serves them without a CDN
        redoc_url=None,
    )
    app.add_exception_handler(PicmetricError, _picmetric_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    # The last added runs first. BodyLimit's errors are raised from `receive` inside the route;
    # it runs inside the metrics middleware, whose own reads of `receive` are in a task group.
    app.add_middleware(BodyLimit, settings=settings)
    app.middleware("http")(_count_requests)
    app.add_middleware(TrustedHosts, allowed_hosts=settings.trusted_hosts)
    app.include_router(seed.router)
    app.include_router(v1.router)
    app.include_router(jobs.router)
    app.include_router(health.router)
    docs.add_docs(app)
    app.include_router(page.router)
    if tracing.configure():
        _trace_requests(app)
    return app


def _trace_requests(app: FastAPI) -> None:
    """A server span per request (a client's W3C `traceparent` continued), outermost, so that an
    error's response and every middleware's work are inside it; probes are left out."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="healthz,readyz", exclude_spans=["receive", "send"]
    )


def create_ops_app(api: FastAPI, settings: Settings) -> FastAPI:
    """The operations port's app: /metrics and the readiness report over `api`'s services
    (it shares `api`'s state, and `api`'s lifespan starts and stops them). No API key: only
    what its listen address lets in (Settings.ops_host) reaches it, by an address or a one-label
    name (OperationsHosts)."""
    ops = FastAPI(
        title="Picmetric gateway operations", docs_url=None, redoc_url=None, openapi_url=None
    )
    ops.state = api.state
    ops.add_middleware(OperationsHosts, allowed_hosts=settings.trusted_hosts)
    ops.include_router(health.ops_router)
    return ops


class ByPort:
    """Each request to the app of the local port it came in on (`apps`, by port), others to
    `default`; the lifespan to `default`. The port is the listening socket's, never a header."""

    def __init__(self, default: ASGIApp, apps: Mapping[int, ASGIApp]) -> None:
        self.default = default
        self.apps = dict(apps)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") if scope["type"] != "lifespan" else None
        app = self.apps.get(server[1], self.default) if server else self.default
        await app(scope, receive, send)
