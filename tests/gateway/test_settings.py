"""Settings from PICMETRIC_* variables: parsing, and a clear refusal of nonsense."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_a_gateway_on_loopback_may_run_without_api_keys(host: str) -> None:
    Settings(api_keys=[]).check_exposure(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "picmetric.example.com"])
def test_a_gateway_beyond_loopback_needs_api_keys_or_explicit_anonymous_access(host: str) -> None:
    with pytest.raises(ValueError, match="PICMETRIC_ALLOW_ANONYMOUS=true"):
        Settings(api_keys=[]).check_exposure(host)
    Settings(api_keys=["k"]).check_exposure(host)
    Settings(api_keys=[], allow_anonymous=True).check_exposure(host)


def test_an_open_gateway_refuses_to_start_with_one_clear_line(tmp_path: Path) -> None:
    """`picmetric gateway --host 0.0.0.0` with no keys exits before it listens or touches the
    database; with PICMETRIC_ALLOW_ANONYMOUS=true it gets past the check."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICMETRIC_")}
    env["PICMETRIC_DATABASE_URL"] = f"sqlite:///{tmp_path / 'a.db'}"
    command = [sys.executable, "-m", "picmetric", "gateway", "--host", "0.0.0.0", "--port", "1"]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert "Refusing to listen on 0.0.0.0 without API keys" in line
    assert "PICMETRIC_API_KEYS" in line and "PICMETRIC_ALLOW_ANONYMOUS=true" in line
    assert "Traceback" not in result.stderr and not (tmp_path / "a.db").exists()


def test_secret_settings_never_show_in_a_printed_settings() -> None:
    settings = Settings(api_keys=["k-secret"], triton_admin_key="admin-secret")
    assert "k-secret" not in repr(settings) and "admin-secret" not in repr(settings)
    assert Settings(triton_admin_key="").triton_admin_key is None


def test_the_operations_port_must_not_be_the_api_port(tmp_path: Path) -> None:
    """One port cannot serve the API and the operations app: one clear line, no server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICMETRIC_")}
    env["PICMETRIC_DATABASE_URL"] = f"sqlite:///{tmp_path / 'a.db'}"
    env["PICMETRIC_OPS_PORT"] = "18080"
    command = [sys.executable, "-m", "picmetric", "gateway", "--port", "18080"]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert "PICMETRIC_OPS_PORT (18080) must differ from the API's --port" in line
    assert "Traceback" not in result.stderr and "Uvicorn running" not in result.stderr


def test_a_trace_url_template_names_where_the_trace_id_goes() -> None:
    template = "http://localhost:16686/trace/{trace_id}"
    assert Settings(trace_url_template=template).trace_url_template == template
    for wrong in ("http://localhost:16686/trace/", "javascript:alert(1)//{trace_id}"):
        with pytest.raises(ValueError, match="trace_id"):
            Settings(trace_url_template=wrong)
