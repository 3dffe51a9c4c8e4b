"""The PICMETRIC_ environment variables (and an optional .env file) that more than the gateway
reads: every command's model repository, Triton's admin key (`picmetric triton` locks Triton with
it, the gateway sends it), and the key `picmetric analyze` sends. Read here, and the gateway's own
in gateway/settings.py, which extends these; nowhere else (tests/core/test_settings.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PICMETRIC_", env_file=".env", extra="ignore")

    # None: the checkout's (core.paths.MODEL_REPOSITORY); an image installs the project into
    # site-packages, away from any checkout, and says where its models are.
    model_repository: Path | None = None
    # Triton's admin API (core/triton_admin.py) is locked with it; the same key for the Triton
    # `picmetric triton` starts and the gateway that repairs its models.
    triton_admin_key: str | None = Field(None, repr=False)

    @field_validator("triton_admin_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: object) -> object:
        return None if value == "" else value


class ClientSettings(BaseSettings):
    """What the client commands (`picmetric analyze`, `show`, `models`) read: the gateway they
    talk to and the API key they send (their --gateway and --api-key win)."""

    model_config = SettingsConfigDict(env_prefix="PICMETRIC_", env_file=".env", extra="ignore")

    api_key: str | None = Field(None, repr=False)
    gateway: str = "http://127.0.0.1:8080"
