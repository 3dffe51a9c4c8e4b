"""Triton's admin API locked behind a header secret (core/triton_admin.py), against the real local
Triton: repository calls (index, load, unload) and the other locked APIs are refused without the
key over HTTP and gRPC and accepted with it; inference, health and metadata stay open."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from core.triton_admin import (
    ADMIN_HEADER,
    GRPC_ADMIN_HEADER,
    grpc_admin_headers,
    http_admin_headers,
    new_admin_key,
    restricted_api_args,
)
from picmetric import cli
from picmetric.triton_server import TritonServer

LOADED = "resnet50"  # loading a loaded model whose files did not change does nothing
REPOSITORY_CALLS = (
    "/v2/repository/index",
    f"/v2/repository/models/{LOADED}/load",
    "/v2/repository/models/no_such_model/unload",
)
OTHER_LOCKED = (
    ("GET", "/v2/logging"),
    ("GET", "/v2/trace/setting"),
    ("GET", "/v2/systemsharedmemory/status"),
    ("GET", "/v2/cudasharedmemory/status"),
)


def test_restricted_api_args_use_the_syntax_triton_takes() -> None:
    """`<apis>:<header>=<value>` (the `<apis>,<header>=<value>` of Triton's --help is refused:
    "option format is '<config name>:<setting>=<value>'")."""
    apis = "model-repository,shared-memory,trace,logging"
    assert restricted_api_args("k3y") == [
        f"--http-restricted-api={apis}:{ADMIN_HEADER}=k3y",
        f"--grpc-restricted-protocol={apis}:{ADMIN_HEADER}=k3y",
    ]
    for bad in ("", "a:b", "a=b", "a,b", "a b"):
        with pytest.raises(ValueError, match="admin key"):
            restricted_api_args(bad)
    assert new_admin_key() != new_admin_key() and len(new_admin_key()) >= 40


def test_every_local_triton_is_started_locked() -> None:
    args, _ = TritonServer(admin_key="chosen").command()
    assert set(restricted_api_args("chosen")) <= set(args)
    assert TritonServer().admin_key != TritonServer().admin_key  # a fresh key per server


@pytest.mark.integration
def test_repository_api_over_http_needs_the_admin_key(triton: TritonServer) -> None:
    base = f"http://{triton.http_url}"
    for path in REPOSITORY_CALLS:
        for headers in ({}, {ADMIN_HEADER: "wrong"}):
            refused = httpx.post(base + path, headers=headers, timeout=30)
            assert refused.status_code == 403, (path, refused.text)
            assert "restricted" in refused.text
    keyed = http_admin_headers(triton.admin_key)
    assert httpx.post(base + REPOSITORY_CALLS[0], headers=keyed, timeout=30).status_code == 200
    assert httpx.post(base + REPOSITORY_CALLS[1], headers=keyed, timeout=60).status_code == 200
    unload = httpx.post(base + REPOSITORY_CALLS[2], headers=keyed, timeout=30)
    assert unload.status_code != 403 and "restricted" not in unload.text
    for method, path in OTHER_LOCKED:
        refused = httpx.request(method, base + path, timeout=30)
        assert refused.status_code == 403, (path, refused.text)
        assert httpx.request(method, base + path, headers=keyed, timeout=30).status_code != 403
    # What the gateway, the probes and Prometheus use stays open.
    assert httpx.get(f"{base}/v2/health/ready", timeout=10).status_code == 200
    assert httpx.get(f"{base}/v2/models/{LOADED}", timeout=10).status_code == 200
    assert httpx.get(f"{base}/v2/models/{LOADED}/config", timeout=10).status_code == 200
    assert httpx.get(f"{base}/v2/models/{LOADED}/stats", timeout=10).status_code == 200


@pytest.mark.integration
def test_repository_api_over_grpc_needs_the_admin_key(triton: TritonServer) -> None:
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        calls = (
            lambda headers: client.get_model_repository_index(headers=headers),
            lambda headers: client.load_model(LOADED, headers=headers),
            lambda headers: client.unload_model("no_such_model", headers=headers),
            lambda headers: client.get_log_settings(headers=headers),
            lambda headers: client.get_system_shared_memory_status(headers=headers),
        )
        # over gRPC the header carries Triton's prefix: the bare HTTP name is refused too
        for headers in (None, {GRPC_ADMIN_HEADER: "wrong"}, {ADMIN_HEADER: triton.admin_key}):
            for call in calls:
                with pytest.raises(InferenceServerException, match="restricted"):
                    call(headers)
        keyed = grpc_admin_headers(triton.admin_key)
        assert client.get_model_repository_index(headers=keyed) is not None
        client.load_model(LOADED, headers=keyed)
        assert client.is_model_ready(LOADED)
        client.get_log_settings(headers=keyed)
        client.get_system_shared_memory_status(headers=keyed)
        assert client.get_model_metadata(LOADED).name == LOADED


def test_picmetric_triton_says_where_its_key_is_and_takes_one_from_the_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`picmetric triton` alone: a new key per run in a file only its user reads, named in the
    log with the header to send; PICMETRIC_TRITON_ADMIN_KEY chooses it. `serve` keeps its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("PICMETRIC_TRITON_ADMIN_KEY", raising=False)
    with caplog.at_level(logging.INFO, logger="picmetric"):
        key = cli._triton_admin_key(with_gateway=False, http_port=18000)
    path = tmp_path / "picmetric" / "triton-admin-key-18000"
    assert path.read_text().strip() == key and stat.S_IMODE(path.stat().st_mode) == 0o600
    (message,) = [r.getMessage() for r in caplog.records]
    assert str(path) in message and ADMIN_HEADER in message and GRPC_ADMIN_HEADER in message
    assert key not in message
    assert cli._triton_admin_key(with_gateway=False, http_port=18000) != key
    monkeypatch.setenv("PICMETRIC_TRITON_ADMIN_KEY", "chosen")
    assert cli._triton_admin_key(with_gateway=False, http_port=18000) == "chosen"
    assert cli._triton_admin_key(with_gateway=True, http_port=18000) == "chosen"
    monkeypatch.delenv("PICMETRIC_TRITON_ADMIN_KEY")
    assert cli._triton_admin_key(with_gateway=True, http_port=18000) not in ("chosen", key)


def test_picmetric_triton_and_the_gateway_take_the_same_key_from_dot_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key in `.env` (as ./bootstrap.sh deploy writes it) locks the Triton that `picmetric
    triton` starts and is the one `picmetric gateway` sends: both read it through the settings."""
    from gateway.settings import Settings

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("PICMETRIC_TRITON_ADMIN_KEY", raising=False)
    (tmp_path / ".env").write_text("PICMETRIC_TRITON_ADMIN_KEY=from-dot-env\n")
    monkeypatch.chdir(tmp_path)
    assert cli._triton_admin_key(with_gateway=False, http_port=18000) == "from-dot-env"
    assert Settings().triton_admin_key == "from-dot-env"
