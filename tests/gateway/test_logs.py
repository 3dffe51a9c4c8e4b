"""Log lines a client cannot forge or read secrets from (gateway.logs), without a server."""

from __future__ import annotations

import logging
import sys

import pytest

from gateway.logs import CleanLogFilter, clean, install


def test_clean_escapes_control_characters() -> None:
    assert clean("GET /a\nFORGED line\r\x1b[31m") == "GET /a\\nFORGED line\\r\\x1b[31m"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Fetching http://alice:hunter2@images.test/a.jpg failed", "hunter2"),
        ("Fetching https://token@images.test/a.jpg", "token@"),
        ("GET /a.jpg?size=2&access_token=abc123", "abc123"),
        (
            "s3 https://b.s3.amazonaws.com/k?X-Amz-Signature=feedbeef&X-Amz-Credential=AKIA",
            "feedbeef",
        ),
        ("https://x.test/a.jpg?sig=s1g&api_key=k3y", "k3y"),
    ],
)
def test_clean_redacts_url_secrets(text: str, secret: str) -> None:
    cleaned = clean(text)
    assert secret not in cleaned and "***" in cleaned
    assert "a.jpg" in cleaned or "/k" in cleaned


def test_clean_redacts_by_name_erring_on_the_safe_side() -> None:
    """Any query name holding `key`, `token`, `sig`… is redacted; other values stay."""
    assert clean("https://x.test/a.jpg?size=2&keyboard=no") == (
        "https://x.test/a.jpg?size=2&keyboard=***"
    )


def test_filter_cleans_arguments_keeps_numbers_and_hides_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = logging.LogRecord(
        "gateway", logging.WARNING, __file__, 1, "%s %s -> %d: key %s", None, None
    )
    record.args = ("GET", "/v1/x\nFORGED", 404, "the-api-key")
    CleanLogFilter(["the-api-key"]).filter(record)
    assert record.getMessage() == "GET /v1/x\\nFORGED -> 404: key ***"


def test_filter_keeps_a_traceback_on_its_lines_but_redacted() -> None:
    try:
        raise ValueError("could not fetch http://u:pw123@h.test/")
    except ValueError:
        record = logging.LogRecord("g", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    CleanLogFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "Traceback" in text and "\n" in text and "pw123" not in text


def test_install_puts_one_filter_on_each_handler() -> None:
    handler = logging.StreamHandler()
    logging.getLogger("uvicorn.access").addHandler(handler)
    try:
        install(["k1"])
        install(["k2"])
        filters = [f for f in handler.filters if isinstance(f, CleanLogFilter)]
        assert len(filters) == 1 and filters[0].secrets == ["k2"]
    finally:
        logging.getLogger("uvicorn.access").removeHandler(handler)
