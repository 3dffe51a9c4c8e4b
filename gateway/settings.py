"""Gateway settings: environment variables prefixed PICMETRIC_ (and an optional .env file)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from limits import parse
from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from core.paths import MODEL_REPOSITORY
from core.settings import CommonSettings
from gateway.targets import parse_target

MiB = 1 << 20


def _parse_limit(value: str) -> None:
    """Refuse a rate limit the `limits` library cannot read ("120/minute", "5 per second")."""
    try:
        parse(value)
    except ValueError as exc:
        raise ValueError(f"'{value}' is not a rate limit like 120/minute") from exc


class Settings(CommonSettings):
    """The gateway's settings, with those every command shares (core/settings.py)."""

    # gRPC target syntax (gateway/targets.py): HOST:PORT, ipv4:A:PORT,B:PORT or dns:///NAME:PORT;
    # analyses go to the replicas in turn (gateway/triton/replicas.py).
    triton_grpc_url: str = "127.0.0.1:8001"
    triton_timeout_s: float = Field(30.0, gt=0)
    # A Triton call that finds Triton going away (shutdown, scale-in, restart) waits up to this
    # long, within triton_timeout_s, for the model to be ready again and is retried once; 0: never.
    triton_retry_wait_s: float = Field(10.0, ge=0)
    # Full-resolution inputs (mtcnn's photo) through Triton's system shared memory instead of
    # inside the gRPC request (gateway/triton/shared_memory.py): auto, with replicas at a
    # loopback address; on, with every replica that can open it (compose with a shared IPC
    # namespace); off, never. A replica that cannot falls back to plain gRPC, logged once.
    triton_shared_memory: Literal["auto", "on", "off"] = "auto"
    # After SIGTERM the gateway takes no new connections and gives the requests it is serving
    # this long to finish (uvicorn's graceful shutdown); at least the longest analysis.
    shutdown_timeout_s: float = Field(60.0, gt=0)
    model_repository: Path = MODEL_REPOSITORY
    database_url: str = "sqlite:///picmetric.db"
    # false where the deployment runs `picmetric migrate` itself before the gateway starts
    migrate_on_start: bool = True
    s3_bucket: str | None = None  # uploads are kept here; unset: in upload_dir
    # Without a bucket, uploads are kept in this folder (gateway/intake/local_uploads.py;
    # `picmetric serve` defaults it to ~/.cache/picmetric/uploads); neither: /v1/images is 503.
    upload_dir: Path | None = None
    # true: uploads are kept as sent, their GPS position and identifying EXIF/XMP included;
    # false: rebuilt from their pixel data, orientation and colour profile
    # (gateway/images/privacy/).
    keep_upload_metadata: bool = False
    # Where s3:// images may be read from: comma-separated `bucket` or `bucket/prefix/`; empty:
    # s3_bucket only. The gateway's role may read more than its clients should (s3.py).
    s3_read_from: Annotated[list[str], NoDecode] = []
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_timeout_s: float = Field(10.0, gt=0)
    max_image_bytes: int = Field(20 * MiB, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0)
    # The longest side of a photo, checked from the header with the pixels (libpng refuses rows
    # over 1,000,000 px, OpenCV images over 2^20 px a side); at most libjpeg's largest, so that
    # every photo analysed can be answered drawn as a JPEG (/v1/annotate).
    max_image_side: int = Field(65_500, ge=1, le=65_500)
    # Scans of one JPEG (gateway.images.decode: the decoder passes over the coefficients once a
    # scan).
    max_jpeg_scans: int = Field(64, ge=1)
    # What the photos being decoded and analysed in one process may hold at once (the decoded
    # pixels, what the decoder keeps of the stored ones, the quality figures' buffers and the
    # models' inputs in flight: gateway.pipeline.analysis.analysis_memory): with the process's own
    # ~0.25 GB it keeps a gateway under the chart's 2 GiB limit. A photo needing more: 413.
    decode_memory_bytes: int = Field(1 << 30, ge=MiB)
    max_batch_images: int = Field(16, ge=1, le=64)  # POST /v1/batch
    max_batch_bytes: int = Field(64 * MiB, gt=0)  # the uploads of one batch together
    # The whole time a client has to send its request body (slow links: a 20 MiB upload at
    # 4 Mbit/s takes 40 s); past it 408.
    body_timeout_s: float = Field(60.0, gt=0)
    fetch_connect_timeout_s: float = Field(5.0, gt=0)
    fetch_timeout_s: float = Field(20.0, gt=0)  # one fetch in all: DNS, every redirect, the body
    max_redirects: int = Field(3, ge=0)
    allow_private_urls: bool = False
    default_threshold: float = Field(0.2, ge=0, le=1)
    default_max_results: int = Field(10, ge=1, le=100)
    # repr=False: the keys never show in a printed or logged Settings
    api_keys: Annotated[list[str], NoDecode] = Field([], repr=False)
    # Host names the gateway answers to besides localhost's (comma-separated; `*.example.com`
    # for subdomains, `*` for any); others 400 untrusted_host, against DNS rebinding.
    allowed_hosts: Annotated[list[str], NoDecode] = []
    # Rate limits, counted in Redis (gateway/ratelimit.py); unset: no limits.
    redis_url: str | None = None
    rate_limit: str = "120/minute"  # each key's (or, without keys, each client address's)
    # Other limits for some keys: comma-separated `<key id>=<limit>` (key id: ratelimit.key_id).
    rate_limits: Annotated[dict[str, str], NoDecode] = {}
    # Without API keys a gateway listening beyond loopback refuses to start, unless this says
    # that anonymous access is wanted (check_exposure).
    allow_anonymous: bool = False
    # /readyz runs one canary inference through every model at a time and trusts its answer this
    # long when it worked, canary_retry_s when it failed (a flood of probes runs no more).
    canary_max_age_s: float = Field(60.0, gt=0)
    canary_retry_s: float = Field(5.0, gt=0)
    # The operations port: /metrics and the detailed /readyz (every Triton replica's address,
    # models and canary), which the API port does not serve. No API key guards it: listen where
    # only Prometheus and operators reach (0.0.0.0 in a container whose port is not published).
    ops_host: str = "127.0.0.1"
    ops_port: int = Field(8081, ge=1, le=65535)
    # Analyses one process runs at once; past it: 503 overloaded at once. On the 2-core CPU
    # benchmark (BENCHMARKS.md) photos/s stops growing by concurrency 4; more only queues.
    max_analyses_in_flight: int = Field(4, ge=1, le=1024)
    # Image fetches (http(s) and s3://) one API key runs at once in one process, a batch's
    # included; past it: 429 too_many_fetches. A fetch holds no analysis slot (it waits on
    # another server), so this bounds what one key's slow upstreams hold instead: sockets, and
    # bytes (at most this many times max_image_bytes). A batch fetches this many at a time.
    max_fetches_per_key: int = Field(8, ge=1, le=1024)
    # Bulk jobs (gateway/jobs/, POST /v1/jobs), queued in Redis (redis_url) for `picmetric worker`.
    jobs_max_photos: int = Field(10_000, ge=1)  # photos in one job; past it 413 job_too_large
    jobs_max_running_per_key: int = Field(2, ge=1)  # a key's jobs queued or running; past it 429
    # photos a key's unfinished jobs still have to do, the new job's included; past it 429
    jobs_max_queued_photos_per_key: int = Field(50_000, ge=1)
    # A job's photos in the queue at once: the worker sends the next as one finishes, so the
    # photos of every job interleave (a 100,000-photo job does not starve a 20-photo one).
    jobs_window: int = Field(8, ge=1, le=1000)
    # Where a job may write its results as JSON Lines (`export`): `bucket` or `bucket/prefix`
    # places, comma-separated; none by default (export off).
    jobs_export_to: Annotated[list[str], NoDecode] = []
    jobs_export_shard_results: int = Field(1000, ge=1, le=10_000)  # results in one shard at most
    jobs_worker_concurrency: int = Field(4, ge=1, le=256)  # photos one worker analyses at once
    # ... and while any gateway analyses photos for its clients, or did within the linger
    # (gateway/jobs/interactive.py): interactive requests keep the cores.
    jobs_worker_concurrency_while_interactive: int = Field(1, ge=1, le=256)
    jobs_interactive_linger_s: float = Field(2.0, gt=0)
    # A worker that stops answering for this long is dead: the photos it held are queued again.
    jobs_heartbeat_timeout_s: float = Field(60.0, gt=0)
    jobs_manifest_max_bytes: int = Field(4 * MiB, ge=1)  # a manifest's size; past it 413
    # A bulk job's webhook when it ends (gateway/jobs/webhooks.py): this many tries at most, each
    # within jobs_webhook_timeout_s in all (DNS, connect, the answer's status), the first retry
    # after jobs_webhook_backoff_s and each next after twice the wait before it.
    jobs_webhook_attempts: int = Field(5, ge=1, le=20)
    jobs_webhook_timeout_s: float = Field(10.0, gt=0)
    jobs_webhook_backoff_s: float = Field(1.0, ge=0)
    # The try-it page links an analysis to its trace (README, Traces) at this URL, `{trace_id}`
    # replaced: http://localhost:16686/trace/{trace_id} for compose's Jaeger. Empty: no link.
    trace_url_template: str = ""

    @field_validator("api_keys", "s3_read_from", "allowed_hosts", "jobs_export_to", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        """PICMETRIC_API_KEYS, PICMETRIC_S3_READ_FROM, PICMETRIC_ALLOWED_HOSTS and
        PICMETRIC_JOBS_EXPORT_TO are comma-separated lists."""
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _split_limits(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = [pair.split("=", 1) for pair in value.split(",") if pair.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("give each limit as <key id>=<limit>, e.g. 3f2a9c01b7de=9/second")
            return {identity.strip(): limit.strip() for identity, limit in pairs}
        return value

    @field_validator("rate_limit")
    @classmethod
    def _known_limit(cls, value: str) -> str:
        _parse_limit(value)
        return value

    @field_validator("trace_url_template")
    @classmethod
    def _trace_url(cls, value: str) -> str:
        if value and (not value.startswith(("http://", "https://")) or "{trace_id}" not in value):
            raise ValueError(
                f"'{value}' is not an http(s) URL with {{trace_id}} in it, such as "
                "http://localhost:16686/trace/{trace_id}"
            )
        return value

    @field_validator("rate_limits")
    @classmethod
    def _known_limits(cls, value: dict[str, str]) -> dict[str, str]:
        for limit in value.values():
            _parse_limit(limit)
        return value

    @field_validator("s3_bucket", "s3_endpoint_url", "redis_url", "upload_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("triton_grpc_url")
    @classmethod
    def _triton_target(cls, value: str) -> str:
        parse_target(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("database_url must be an sqlite:/// or postgresql:// URL")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            wildcard = pattern.startswith("*") and pattern != "*"
            if "*" in pattern[1:] or (wildcard and not pattern.startswith("*.")):
                raise ValueError(f"{pattern!r}: a wildcard host must be like '*.example.com'")
        return value

    @property
    def trusted_hosts(self) -> list[str]:
        """The Host names answered: localhost's and PICMETRIC_ALLOWED_HOSTS."""
        return ["localhost", "127.0.0.1", "::1", *self.allowed_hosts]

    @property
    def s3_readable(self) -> list[str]:
        """The `bucket` and `bucket/prefix` places s3:// images may be read from."""
        return self.s3_read_from or ([self.s3_bucket] if self.s3_bucket else [])

    def check_exposure(self, host: str) -> None:
        """Refuse (ValueError, one line) to serve without API keys on an address other machines
        can reach, unless anonymous access was asked for."""
        if self.api_keys or self.allow_anonymous or is_loopback(host):
            return
        raise ValueError(
            f"Refusing to listen on {host} without API keys: set PICMETRIC_API_KEYS "
            "(comma-separated), or PICMETRIC_ALLOW_ANONYMOUS=true to serve anyone, "
            "or listen on 127.0.0.1."
        )


def is_loopback(host: str) -> bool:
    """Whether `host` (a listen address) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
