"""Gateway settings: environment variables prefixed PICMETRIC_ (and an optional .env file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.paths import MODEL_REPOSITORY

MiB = 1 << 20


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PICMETRIC_", env_file=".env", extra="ignore")

    triton_grpc_url: str = "127.0.0.1:8001"
    triton_timeout_s: float = Field(30.0, gt=0)
    # A Triton call that finds Triton going away (shutdown, scale-in, restart) waits up to this
    # long, within triton_timeout_s, for the model to be ready again and is retried once; 0: never.
    triton_retry_wait_s: float = Field(10.0, ge=0)
    # After SIGTERM the gateway takes no new connections and gives the requests it is serving
    # this long to finish (uvicorn's graceful shutdown); at least the longest analysis.
    shutdown_timeout_s: float = Field(60.0, gt=0)
    model_repository: Path = MODEL_REPOSITORY
    database_url: str = "sqlite:///picmetric.db"
    # false where the deployment runs `picmetric migrate` itself before the gateway starts
    migrate_on_start: bool = True
    s3_bucket: str | None = None  # uploads are kept here; unset: /v1/images is unavailable
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_timeout_s: float = Field(10.0, gt=0)
    max_image_bytes: int = Field(20 * MiB, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0)
    max_batch_images: int = Field(16, ge=1, le=64)  # POST /v1/batch
    max_batch_bytes: int = Field(64 * MiB, gt=0)  # the uploads of one batch together
    fetch_connect_timeout_s: float = Field(5.0, gt=0)
    fetch_timeout_s: float = Field(20.0, gt=0)
    max_redirects: int = Field(3, ge=0)
    allow_private_urls: bool = False
    default_threshold: float = Field(0.2, ge=0, lt=1)
    default_max_results: int = Field(10, ge=1, le=100)
    # repr=False: the keys never show in a printed or logged Settings
    api_keys: Annotated[list[str], NoDecode] = Field([], repr=False)
    canary_max_age_s: float = Field(60.0, gt=0)
    # Analyses one process runs at once; past it: 503 overloaded at once. On the 2-core CPU
    # benchmark (BENCHMARKS.md) photos/s stops growing by concurrency 4; more only queues.
    max_analyses_in_flight: int = Field(4, ge=1, le=1024)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        """PICMETRIC_API_KEYS is a comma-separated list; empty means no key is required."""
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("s3_bucket", "s3_endpoint_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("database_url must be an sqlite:/// or postgresql:// URL")
        return value
