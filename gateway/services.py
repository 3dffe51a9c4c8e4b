"""The long-lived clients one gateway process shares: Triton, HTTP, S3, the store, the catalog,
the admission limiter and the model repair."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import tritonclient.grpc.aio as grpcclient
from botocore.config import Config
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

from gateway.admission import MEMORY_WAIT_S, AdmissionLimiter, MemoryBudget
from gateway.catalog import ModelCatalog
from gateway.fetch import http_client
from gateway.inference import Call
from gateway.ratelimit import RateLimiter
from gateway.repair import ModelRepair
from gateway.settings import Settings
from gateway.storage import AnalysisStore

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
    triton: grpcclient.InferenceServerClient
    http: httpx.AsyncClient
    s3: Any
    store: AnalysisStore
    catalog: ModelCatalog
    admission: AdmissionLimiter
    decode_memory: MemoryBudget
    repair: ModelRepair
    rate_limiter: RateLimiter | None

    @classmethod
    def create(cls, settings: Settings) -> Services:
        s3_config = Config(
            connect_timeout=settings.s3_timeout_s,
            read_timeout=settings.s3_timeout_s,
            retries={"max_attempts": 2},
        )
        triton = grpcclient.InferenceServerClient(
            settings.triton_grpc_url, channel_args=TRITON_CHANNEL
        )
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
            store=AnalysisStore(settings.database_url),
            catalog=ModelCatalog(settings.model_repository),
            admission=AdmissionLimiter(settings.max_analyses_in_flight),
            decode_memory=MemoryBudget(settings.decode_memory_bytes, MEMORY_WAIT_S),
            repair=ModelRepair(triton, admin_key=settings.triton_admin_key),
            rate_limiter=RateLimiter(settings.redis_url, settings.rate_limit, settings.rate_limits)
            if settings.redis_url
            else None,
        )

    def call(self) -> Call:
        sizes = {
            name: state.input_size
            for name, state in self.catalog.states.items()
            if state.input_size is not None
        }
        return Call(
            self.triton,
            self.settings.triton_timeout_s,
            self.settings.model_repository,
            sizes,
            on_dead_stub=self.dead_stub,
            retry_wait=self.settings.triton_retry_wait_s,
        )

    def dead_stub(self, triton_model: str, reason: str) -> None:
        """A call found a Triton model's Python stub dead: reload the model, and let /readyz run
        its canary again rather than trust the last one."""
        self.catalog.last_canary = None
        self.repair.request(triton_model, reason)

    async def close(self) -> None:
        await self.repair.close()
        await self.triton.close()
        await self.http.aclose()
        self.store.dispose()
