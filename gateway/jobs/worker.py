"""A job worker (`picmetric worker`): one Dramatiq worker over the job queue, answering each photo
through the same pipeline as /v1/analyze, with the job's owner and options, so answers equal
/v1/analyze's and a photo the key had analysed comes from the store without inference.

After each photo the worker refills its job's window (at most jobs_window of a job's photos in
the queue, so jobs interleave); every SWEEP_S a sweep refills every open job's window and sends
again what stayed queued longer than jobs_heartbeat_timeout_s (a worker that died between
marking a photo queued and sending it; a broker that lost its messages). A photo answered twice
(delivered again after a crash) is recorded once (gateway.store.jobs)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import threading

import dramatiq
import prometheus_client
from dramatiq.asyncio import get_event_loop_thread

from core.model_config import BULK_PRIORITY
from gateway import metrics, tracing
from gateway.errors import UNEXPECTED, PicmetricError
from gateway.jobs.export import export_results
from gateway.jobs.interactive import BulkShare
from gateway.jobs.progress import job_album
from gateway.jobs.queue import JobQueue
from gateway.jobs.webhooks import send_job_ended
from gateway.pipeline.analysis import analyze
from gateway.pipeline.request import AnalysisRequest, url_kind
from gateway.results import DEFAULT_MIN_FACE_SIZE, Options
from gateway.services import Services
from gateway.settings import Settings
from gateway.store.jobs import now
from gateway.store.migrate import prepare_schema
from gateway.store.storage import JobRow
from gateway.tenancy import public_url

log = logging.getLogger(__name__)

SWEEP_S = 5.0  # the longest between two sweeps
# Errors of the service, not of the photo: the photo is tried again (queue.RETRIES), not failed.
RETRIED_STATUSES = frozenset({429, 503})


def sweep_interval(settings: Settings) -> float:
    return min(SWEEP_S, settings.jobs_heartbeat_timeout_s / 2)


class JobWorker:
    """Answers job photos on one process's services."""

    def __init__(self, services: Services, queue: JobQueue, share: BulkShare) -> None:
        self.services = services
        self.queue = queue
        self.share = share
        self.settings = services.settings

    async def answer(self, job_id: str, position: int) -> None:
        """Answer the photo at `position` of the job when this worker's share allows another
        photo (fewer while gateways answer interactive requests), unless it was answered or its
        job cancelled; then refill the job's window. Raises a PicmetricError of the service
        (503, 429) for Dramatiq to try again later."""
        async with self.share.turn():
            await self._answer(job_id, position)
        await self.refill(job_id)

    async def _answer(self, job_id: str, position: int) -> None:
        jobs = self.services.jobs
        started = await jobs.start_item(job_id, position)
        if started is not None:
            job, item = started.job, started.item
            # One trace per photo, linked to the submit's (as a batch's photos to the batch's).
            attributes: dict[str, str | int] = {
                "picmetric.job_id": job_id,
                "picmetric.job_position": position,
            }
            span = tracing.linked_root("job photo", attributes, link_to=job.traceparent)
            try:
                with tracing.use(span):
                    state, analysis_id, error = await self._analyze(job, item.source)
            finally:
                span.end()
            finished = await jobs.finish_item(
                job_id, position, state, analysis_id, error, public_url(item.source)
            )
            if finished.answered:
                metrics.JOB_PHOTOS.labels(state).inc()
            if finished.job_complete:
                try:
                    await self.finish(finished.job)
                except Exception:  # the answers stand; only the summary or webhook is missing
                    log.exception("Job %s: its album or webhook failed", job_id)

    async def _analyze(
        self, job: JobRow, source: str
    ) -> tuple[str, str | None, tuple[str, str] | None]:
        """(state, analysis id, error) of one photo: done, skipped (from the store) or failed."""
        options = job.options
        try:
            request = AnalysisRequest(
                source_kind=url_kind(source),
                source=source,
                models=options.get("models"),
                options=Options(
                    threshold=options["threshold"],
                    max_results=options["max_results"],
                    # jobs submitted before it was an option: the default
                    min_face_size=options.get("min_face_size", DEFAULT_MIN_FACE_SIZE),
                ),
            )
            # Triton's lower priority level: interactive requests go first.
            analysis = await analyze(request, self.services, job.owner, BULK_PRIORITY)
        except PicmetricError as exc:
            if exc.status_code in RETRIED_STATUSES:
                raise
            log.info(
                "Job %s photo %s failed: %s %s", job.id, public_url(source), exc.errortype, exc
            )
            metrics.ERRORS.labels(exc.errortype).inc()
            return "failed", None, (exc.errortype, str(exc))
        except Exception:  # a bug must not stop the job: the photo fails alone
            log.exception("Job %s photo %s failed unexpectedly", job.id, public_url(source))
            return "failed", None, ("internal_error", UNEXPECTED)
        return ("skipped" if analysis.cached else "done"), analysis.id, None

    async def refill(self, job_id: str, stale_before: dt.datetime | None = None) -> None:
        positions = await self.services.jobs.claim(job_id, self.settings.jobs_window, stale_before)
        await self.queue.send(job_id, positions)

    async def finish(self, job: JobRow) -> None:
        """Every photo of the job is answered: its album, and the job done with it; then, by the
        one call that made it done, its results exported when asked and its webhook."""
        album = await job_album(self.services.jobs, job)
        done = await self.services.jobs.finish_job(job.id, album.model_dump(mode="json"))
        if done is None:
            return  # another worker's call (or a cancel) came first
        job = done
        created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=dt.UTC)
        metrics.JOB_SECONDS.observe((now() - created).total_seconds())
        log.info("Job %s done: %d photos (%d failed)", job.id, job.total, job.failed)
        export = job.options.get("export")
        if export:  # before the webhook, so that its receiver finds the shards written
            try:
                await export_results(self.services, job, export)
            except Exception:  # the webhook is sent all the same; the results stay readable
                log.exception("Job %s: its results could not be written to %s", job.id, export)
        services = self.services
        await send_job_ended(job, services.http, self.settings, services.catalog.states)

    async def sweep(self) -> None:
        """Refill every open job's window, sending again what stayed queued too long."""
        stale_before = now() - dt.timedelta(seconds=self.settings.jobs_heartbeat_timeout_s)
        open_jobs = await self.services.jobs.open_jobs()
        for job in open_jobs:
            if job.done + job.failed + job.skipped >= job.total:
                await self.finish(job)  # its last worker died before finishing it
            else:
                await self.refill(job.id, stale_before)
        metrics.JOBS_RUNNING.set(len(open_jobs))
        metrics.JOBS_QUEUED_PHOTOS.set(
            sum(j.total - j.done - j.skipped - j.failed for j in open_jobs)
        )


class _CloseServices(dramatiq.Middleware):
    """Closes the process's services on Dramatiq's event loop once its worker threads are done,
    before the AsyncIO middleware (earlier in the list: the after_ hooks run last first) stops
    the loop."""

    def __init__(self, process: WorkerProcess) -> None:
        self.process = process

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop = get_event_loop_thread()
        if loop is not None:
            loop.run_coroutine(self.process.close())


class WorkerProcess:
    """The process's worker, made on the event loop of Dramatiq's AsyncIO middleware at the
    first message or sweep."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue = JobQueue(settings, handler=self.answer)
        self.queue.broker.add_middleware(_CloseServices(self))
        self._worker: JobWorker | None = None
        self._ready: asyncio.Lock | None = None

    async def worker(self) -> JobWorker:
        if self._ready is None:
            self._ready = asyncio.Lock()
        async with self._ready:
            if self._worker is None:
                services = Services.create(self.settings)
                await services.start()
                await services.catalog.refresh(services.triton)
                self._worker = JobWorker(services, self.queue, BulkShare(self.settings))
        return self._worker

    async def answer(self, job_id: str, position: int) -> None:
        await (await self.worker()).answer(job_id, position)

    async def close(self) -> None:
        if self._worker is not None:
            await self._worker.services.close()
            await self._worker.share.close()

    async def sweep_forever(self) -> None:
        while True:
            try:
                await (await self.worker()).sweep()
            except Exception:  # the database or Redis away: the next sweep tries again
                log.warning("Job sweep failed; trying again", exc_info=True)
            await asyncio.sleep(sweep_interval(self.settings))


def run(settings: Settings, stop: threading.Event | None = None) -> None:
    """One worker answering jobs_worker_concurrency photos at once, until SIGTERM or SIGINT (or
    `stop`); messages being answered then are finished first (Dramatiq's graceful stop)."""
    # No more analyses at once than the worker takes photos, so none is refused as overloaded.
    concurrency = settings.jobs_worker_concurrency
    settings = settings.model_copy(update={"max_analyses_in_flight": concurrency})
    prepare_schema(settings.database_url, upgrade=settings.migrate_on_start)
    tracing.configure()  # the standard OTEL_* variables, as the gateway's
    process = WorkerProcess(settings)
    stop = stop or threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    _serve_metrics(settings)
    worker = dramatiq.Worker(process.queue.broker, worker_threads=concurrency)
    worker.start()
    loop = get_event_loop_thread()
    assert loop is not None, "Dramatiq's AsyncIO middleware starts the event loop"
    sweeping = asyncio.run_coroutine_threadsafe(process.sweep_forever(), loop.loop)
    log.info("Job worker ready: %d photos at once, queue %s", concurrency, settings.redis_url)
    try:
        stop.wait()
    finally:
        sweeping.cancel()  # the sweep task, cancelled on its loop
        worker.stop(timeout=int(settings.shutdown_timeout_s * 1000))
        process.queue.close()


def _serve_metrics(settings: Settings) -> None:
    """The worker's Prometheus metrics (picmetric_job_*) on the operations address,
    PICMETRIC_OPS_HOST:PICMETRIC_OPS_PORT (its own container's, or a port of its own beside a
    gateway); a port in use is logged, the worker answers photos either way."""
    try:
        prometheus_client.start_http_server(settings.ops_port, settings.ops_host)
    except OSError as exc:
        log.error(
            "The worker's metrics are not served: %s:%d: %s (set PICMETRIC_OPS_PORT)",
            settings.ops_host,
            settings.ops_port,
            exc,
        )
        return
    log.info("Worker metrics on http://%s:%d/metrics", settings.ops_host, settings.ops_port)
