"""Prometheus metrics of the gateway (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter(
    "picmetric_requests_total", "HTTP requests by route and status", ["route", "status"]
)
REQUEST_SECONDS = Histogram(
    "picmetric_request_duration_seconds",
    "HTTP request latency by route",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("picmetric_requests_in_flight", "HTTP requests being served")
STAGE_SECONDS = Histogram(
    "picmetric_stage_duration_seconds",
    "Analysis stage latency (fetch, decode, quality, preprocess, store)",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "picmetric_inference_duration_seconds",
    "Triton inference latency by model",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
FETCHED_BYTES = Counter(
    "picmetric_fetched_bytes_total", "Image bytes fetched or uploaded", ["source"]
)
CACHE_HITS = Counter("picmetric_cache_hits_total", "Analyses answered from the store")
ERRORS = Counter("picmetric_errors_total", "Failed requests by errortype", ["errortype"])
MODEL_READY = Gauge(
    "picmetric_model_ready", "1 when Triton serves the model, as of the last check", ["model"]
)
TRITON_LIVE = Gauge("picmetric_triton_live", "1 when Triton answered, as of the last check")
ANALYSES_IN_FLIGHT = Gauge(
    "picmetric_analyses_in_flight",
    "Analyses admitted and running (PICMETRIC_MAX_ANALYSES_IN_FLIGHT)",
)
ANALYSES_REJECTED = Counter(
    "picmetric_analyses_rejected_total", "Analyses refused with 503 overloaded: the bound was full"
)
DECODE_MEMORY = Gauge(
    "picmetric_decode_memory_bytes",
    "Bytes reserved by photos being decoded and analysed (PICMETRIC_DECODE_MEMORY_BYTES)",
)
DECODE_MEMORY_BUDGET = Gauge(
    "picmetric_decode_memory_budget_bytes",
    "The decode memory budget: what photos being analysed may hold together "
    "(PICMETRIC_DECODE_MEMORY_BYTES)",
)
MODEL_REPAIRS = Counter(
    "picmetric_model_repairs_total",
    "Reloads of a Triton model whose Python stub died, by Triton model and outcome "
    "(reloaded, failed)",
    ["model", "outcome"],
)
TRITON_RETRIES = Counter(
    "picmetric_triton_retries_total",
    "Triton calls retried once because Triton was going away, by model and outcome (served: the "
    "retry worked; failed: it failed too; no_ready_triton: no Triton was ready in time)",
    ["model", "outcome"],
)
TRITON_REPLICAS = Gauge(
    "picmetric_triton_replicas",
    "Triton replicas the target resolves to, by state (in_rotation: analyses go to it; out: it "
    "failed to answer several calls in a row and is probed until it answers)",
    ["state"],
)
JOBS_QUEUED_PHOTOS = Gauge(
    "picmetric_jobs_queued_photos",
    "Photos of unfinished jobs not yet answered, as of a worker's last sweep",
)
JOB_PHOTOS = Counter(
    "picmetric_job_photos_total",
    "Job photos answered, by outcome (done: analysed; skipped: answered from the store; failed)",
    ["outcome"],
)
JOB_SECONDS = Histogram(
    "picmetric_job_duration_seconds",
    "Jobs from submit to their last photo",
    buckets=(1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600),
)
JOBS_RUNNING = Gauge(
    "picmetric_jobs_running", "Jobs queued or running, as of a worker's last sweep"
)
JOB_PHOTOS_IN_FLIGHT = Gauge(
    "picmetric_job_photos_in_flight", "Job photos this worker is analysing now"
)
JOB_WORKER_SHARE = Gauge(
    "picmetric_job_worker_share",
    "Job photos this worker may analyse at once now: its concurrency, or fewer while gateways "
    "answer interactive requests (PICMETRIC_JOBS_WORKER_CONCURRENCY_WHILE_INTERACTIVE)",
)
JOB_WEBHOOKS = Counter(
    "picmetric_job_webhooks_total",
    "Job webhooks by outcome: delivered, failed (every try), refused (a URL the guard forbids)",
    ["outcome"],
)

# Every outcome exposed from the start, at 0: a counter's series appears before its first event,
# so dashboards, alerts and rate() see the whole set.
for _outcome in ("done", "skipped", "failed"):
    JOB_PHOTOS.labels(_outcome)
for _outcome in ("delivered", "failed", "refused"):
    JOB_WEBHOOKS.labels(_outcome)
