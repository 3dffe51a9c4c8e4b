"""Log lines a client cannot forge or read secrets from (gateway.logs), without a server."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from gateway.logs import CleanLogFilter, CleanRecords, clean, install


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


def _raise_with_cause(message: str) -> None:
    try:
        raise KeyError("a\nFORGED cause")
    except KeyError as cause:
        raise ValueError(message) from cause


def test_a_tracebacks_messages_stay_on_their_lines() -> None:
    """An exception's message may hold a client's text: in a traceback it is escaped like any
    message, its cause's and a group's members' too, while the frames keep their lines."""
    try:
        _raise_with_cause("No analysis with id 'a\nFORGED'")
    except ValueError:
        record = logging.LogRecord("g", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    group_type = ExceptionGroup
    group = group_type("photos", [ValueError("b\nFORGED"), TypeError("c")])
    grouped = logging.LogRecord("g", logging.ERROR, __file__, 1, "failed", None, None)
    grouped.exc_info = (group_type, group, None)
    for each in (record, grouped):
        CleanLogFilter().filter(each)
    text = logging.Formatter().format(record)
    lines = text.splitlines()
    assert lines[0] == "failed" and lines[1] == "Traceback (most recent call last):"
    assert "ValueError: No analysis with id 'a\\nFORGED'" in lines
    assert "KeyError: 'a\\nFORGED cause'" in lines
    assert "The above exception was the direct cause of the following exception:" in lines
    assert sum(line.startswith('  File "') for line in lines) == 3
    grouped_lines = logging.Formatter().format(grouped).splitlines()
    assert "ValueError: b\\nFORGED" in grouped_lines and "TypeError: c" in grouped_lines
    assert not [line for line in [*lines, *grouped_lines] if line.startswith("FORGED")]


def test_install_cleans_every_record_whatever_handler_it_reaches(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Records are cleaned where they are made: a handler added after install, and Python's
    last-resort handler (no handler anywhere), write one line; a second install replaces the
    first one's keys."""
    factory = logging.getLogRecordFactory()
    try:
        install(["k1"])
        install(["k2"])
        assert isinstance(logging.getLogRecordFactory(), CleanRecords)
        # an app started by an earlier test may have installed its own already
        base = factory.make if isinstance(factory, CleanRecords) else factory
        assert logging.getLogRecordFactory().make is base  # type: ignore[attr-defined]
        stream = io.StringIO()
        later = logging.getLogger("tests.later")
        later.addHandler(logging.StreamHandler(stream))
        later.propagate = False
        later.warning("GET %s with %s and %s", "/v1/x\nFORGED", "k2", "k1")
        assert stream.getvalue() == "GET /v1/x\\nFORGED with *** and k1\n"
        unhandled = logging.getLogger("tests.unhandled")
        unhandled.propagate = False  # reaches no handler: logging.lastResort writes it
        unhandled.warning("No analysis with id '%s'", "a\nFORGED")
        assert capsys.readouterr().err == "No analysis with id 'a\\nFORGED'\n"
    finally:
        logging.setLogRecordFactory(factory)
