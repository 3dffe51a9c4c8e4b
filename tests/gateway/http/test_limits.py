"""The limits on what a client sends (gateway.http.limits) that need no server: which limit a body
has, and the host names' setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.errors import ImageTooLarge, RequestTooLarge
from gateway.http.limits import JSON_BODY_LIMIT, MULTIPART_OVERHEAD, body_limit
from gateway.settings import Settings

SETTINGS = Settings(max_image_bytes=1000, max_batch_bytes=5000)
FORM = "multipart/form-data; boundary=x"


def test_body_limit_of_an_upload_is_the_image_limit_plus_the_form() -> None:
    limit = body_limit(SETTINGS, "/v1/analyze", FORM)
    assert limit.size == 1000 + MULTIPART_OVERHEAD
    refusal = limit.refusal()
    assert isinstance(refusal, ImageTooLarge) and refusal.status_code == 413
    assert "1000 bytes limit (PICMETRIC_MAX_IMAGE_BYTES)" in str(refusal)


def test_body_limit_of_a_batch_is_the_batch_limit_plus_the_form() -> None:
    limit = body_limit(SETTINGS, "/v1/batch", FORM)
    assert limit.size == 5000 + MULTIPART_OVERHEAD
    assert "PICMETRIC_MAX_BATCH_BYTES" in str(limit.refusal())


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", ""])
def test_body_limit_of_anything_else_is_the_json_limit(content_type: str) -> None:
    limit = body_limit(SETTINGS, "/v1/batch", content_type)
    assert limit.size == JSON_BODY_LIMIT and isinstance(limit.refusal(), RequestTooLarge)
    assert "at most 256 KiB;" in str(limit.refusal())  # as a person reads it, not in bytes


def test_json_limit_holds_a_full_batch_of_the_longest_urls() -> None:
    longest = Settings.model_fields["max_batch_images"].metadata  # le=64
    most = max(getattr(m, "le", 0) for m in longest)
    assert JSON_BODY_LIMIT > most * 2048 + 1024


def test_trusted_hosts_are_localhosts_and_the_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICMETRIC_ALLOWED_HOSTS", "photos.example.com, *.picmetric.test")
    hosts = Settings().trusted_hosts
    assert hosts == ["localhost", "127.0.0.1", "::1", "photos.example.com", "*.picmetric.test"]


@pytest.mark.parametrize("nonsense", ["*example.com", "photos.*.com"])
def test_allowed_hosts_refuse_misplaced_wildcards(
    monkeypatch: pytest.MonkeyPatch, nonsense: str
) -> None:
    monkeypatch.setenv("PICMETRIC_ALLOWED_HOSTS", nonsense)
    with pytest.raises(ValidationError, match="wildcard"):
        Settings()
