"""The long-lived clients one gateway process shares: Triton, HTTP, S3, the store, the catalog,
and the admission limiter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import tritonclient.grpc.aio as grpcclient
from botocore.config import Config

from gateway.admission import AdmissionLimiter
from gateway.catalog import ModelCatalog
from gateway.fetch import http_client
from gateway.inference import Call
from gateway.settings import Settings
from gateway.storage import AnalysisStore


@dataclass
class Services:
    settings: Settings
    triton: grpcclient.InferenceServerClient
    http: httpx.AsyncClient
    s3: Any
    store: AnalysisStore
    catalog: ModelCatalog
    admission: AdmissionLimiter

    @classmethod
    def create(cls, settings: Settings) -> Services:
        s3_config = Config(
            connect_timeout=settings.s3_timeout_s,
            read_timeout=settings.s3_timeout_s,
            retries={"max_attempts": 2},
        )
        return cls(
            settings=settings,
            triton=grpcclient.InferenceServerClient(settings.triton_grpc_url),
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
        )

    def call(self) -> Call:
        sizes = {
            name: state.input_size
            for name, state in self.catalog.states.items()
            if state.input_size is not None
        }
        return Call(
            self.triton, self.settings.triton_timeout_s, self.settings.model_repository, sizes
        )

    async def close(self) -> None:
        await self.triton.close()
        await self.http.aclose()
        self.store.dispose()
