"""Settings from PICMETRIC_* variables: parsing, and a clear refusal of nonsense."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gateway.settings import Settings


def test_api_keys_are_comma_separated_and_empty_values_mean_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PICMETRIC_API_KEYS", " alpha, beta ,,")
    monkeypatch.setenv("PICMETRIC_S3_BUCKET", "")
    settings = Settings()
    assert settings.api_keys == ["alpha", "beta"] and settings.s3_bucket is None


def test_nonsense_settings_stop_the_gateway_with_one_clear_line() -> None:
    env = {**os.environ, "PICMETRIC_DATABASE_URL": "mysql://db", "PICMETRIC_MAX_IMAGE_BYTES": "-1"}
    result = subprocess.run(
        [sys.executable, "-m", "picmetric", "gateway", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        "PICMETRIC_DATABASE_URL" in result.stderr and "PICMETRIC_MAX_IMAGE_BYTES" in result.stderr
    )
    assert "Traceback" not in result.stderr
