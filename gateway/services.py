"""The long-lived clients one gateway process shares: the Triton replicas (each with its model
repair), HTTP, S3, the store and its jobs, the catalog and the admission limiter."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import tritonclient.grpc.aio as grpcclient
from botocore.config import Config
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

from gateway.admission import MEMORY_WAIT_S, AdmissionLimiter, FetchLimiter, MemoryBudget
from gateway.intake.fetch import http_client
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings
from gateway.store.jobs import JobStore
from gateway.store.storage import AnalysisStore
from gateway.triton.catalog import ModelCatalog
from gateway.triton.inference import Call
from gateway.triton.replicas import Replica, Replicas
from gateway.triton.shared_memory import SharedInputs

log = logging.getLogger(__name__)

# gRPC waits up to 120 s between reconnect attempts by default: after a Triton restart the
# gateway would keep answering 503 long after Triton is back. Our options replace tritonclient's
# defaults, so its message sizes and keepalive are restated.
_KEEPALIVE = KeepAliveOptions()
TRITON_CHANNEL = [
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.keepalive_time_ms", _KEEPALIVE.keepalive_time_ms),
    ("grpc.keepalive_timeout_ms", _KEEPALIVE.keepalive_timeout_ms),
    ("grpc.keepalive_permit_without_calls", _KEEPALIVE.keepalive_permit_without_calls),
    ("grpc.http2.max_pings_without_data", _KEEPALIVE.http2_max_pings_without_data),
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


@dataclass
class Services:
    settings: Settings
    triton: Replicas
    http: httpx.AsyncClient
    s3: Any
    store: AnalysisStore
    jobs: JobStore  # on the store's engine
    catalog: ModelCatalog
    admission: AdmissionLimiter
    fetches: FetchLimiter
    decode_memory: MemoryBudget
    rate_limiter: RateLimiter | None
    shared: SharedInputs | None = None  # None: every input goes inside the gRPC requests

    @classmethod
    def create(cls, settings: Settings) -> Services:
        s3_config = Config(
            connect_timeout=settings.s3_timeout_s,
            read_timeout=settings.s3_timeout_s,
            retries={"max_attempts": 2},
        )
        triton = Replicas(
            settings.triton_grpc_url,
            lambda address: grpcclient.InferenceServerClient(address, channel_args=TRITON_CHANNEL),
            admin_key=settings.triton_admin_key,
        )
        store = AnalysisStore(settings.database_url)
        return cls(
            settings=settings,
            triton=triton,
            http=http_client(settings),
            s3=boto3.client(
                "s3",
                endpoint_url=settings.s3_endpoint_url,
                region_name=settings.s3_region,
                config=s3_config,
            ),
            store=store,
            jobs=JobStore(store.engine),
            catalog=ModelCatalog(
                settings.model_repository, settings.canary_max_age_s, settings.canary_retry_s
            ),
            admission=AdmissionLimiter(settings.max_analyses_in_flight),
            fetches=FetchLimiter(settings.max_fetches_per_key),
            decode_memory=MemoryBudget(settings.decode_memory_bytes, MEMORY_WAIT_S),
            rate_limiter=RateLimiter(settings.redis_url, settings.rate_limit, settings.rate_limits)
            if settings.redis_url
            else None,
            shared=shared_inputs(settings),
        )

    async def start(self) -> None:
        """What needs the event loop: resolving the Triton target and watching its replicas."""
        await self.triton.start()

    def call(self, replica: Replica | None = None) -> Call:
        """A Call on `replica`, by default the next one in rotation."""
        replica = replica or self.triton.next()
        return Call(
            replica.client,
            self.settings.triton_timeout_s,
            self.settings.model_repository,
            self.input_sizes(),
            on_dead_stub=functools.partial(self.dead_stub, replica),
            retry_wait=self.settings.triton_retry_wait_s,
            on_reached=functools.partial(self.triton.reached, replica),
            failover=lambda: self.call(self.triton.next(exclude=replica)),
            address=replica.address,
            shared=self.shared if self.shared and self.shared.in_use(replica.address) else None,
        )

    def input_sizes(self) -> dict[str, int]:
        """The square input side of each model whose Triton says it."""
        return {
            name: state.input_size
            for name, state in self.catalog.states.items()
            if state.input_size is not None
        }

    def dead_stub(self, replica: Replica, triton_model: str, reason: str) -> None:
        """A call found a Triton model's Python stub dead on `replica`: reload the model there, and
        let /readyz run its canary again rather than trust the last one."""
        self.catalog.last_canary = None
        replica.repair.request(triton_model, reason)

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.close({r.address: r.client for r in self.triton.all})
        await self.triton.close()
        await self.http.aclose()
        self.store.dispose()


def shared_inputs(settings: Settings) -> SharedInputs | None:
    """The shared-memory regions PICMETRIC_TRITON_SHARED_MEMORY asks for: one per analysis the
    process admits at once, each as large as the largest photo allowed (sparse: they hold memory
    only during a call). None when off, or when this host cannot make them (said once)."""
    if settings.triton_shared_memory == "off":
        return None
    try:
        return SharedInputs(
            settings.triton_shared_memory,
            slots=settings.max_analyses_in_flight,
            slot_bytes=settings.max_image_pixels * 3,
            admin_key=settings.triton_admin_key,
        )
    except OSError as exc:
        log.warning(
            "Cannot make shared-memory regions for Triton (%s); photos go inside the gRPC "
            "requests (PICMETRIC_TRITON_SHARED_MEMORY=%s)",
            exc,
            settings.triton_shared_memory,
        )
        return None
