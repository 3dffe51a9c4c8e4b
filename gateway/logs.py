"""Log lines a client cannot forge or read secrets from: every record the process makes has its
control characters escaped (a newline in a path cannot start a fake line) and its secrets
redacted (a URL's userinfo, query values of secret-looking names, the API keys).

Records are cleaned where they are made (the log record factory), not by a filter on the handlers
that exist at start-up: a record reaches handlers no such filter sits on (Python's last-resort
handler when the root logger has none, as under `uvicorn --factory gateway.main:create_app`; a
handler added later; a logger that does not propagate). A record made inside a traced analysis
ends with its trace's id (`[trace_id=...]`, gateway.tracing), so a log line finds its trace."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from gateway import tracing

REDACTED = "***"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_USERINFO = re.compile(r"(?<=://)[^/?#@\s]*@")
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:[\w.-]*(?:token|key|secret|password|passwd|pwd|sig|signature|auth|"
    r"credential|session)[\w.-]*|x-amz-[\w-]+)=)[^&#\s;]*"
)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    default = f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, default)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with URL userinfo, secret-looking query values and `secrets` replaced."""
    text = _USERINFO.sub(f"{REDACTED}@", text)
    text = _SECRET_QUERY.sub(rf"\1{REDACTED}", text)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def clean(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` redacted, on one line: control characters escaped."""
    return _CONTROL.sub(_escape, redact(text, secrets))


class CleanLogFilter(logging.Filter):
    """Cleans a record's message and arguments in place (its arguments stay a tuple, as
    uvicorn's access formatter unpacks them); numbers are left as they are for %d."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def _clean(self, value: object) -> object:
        if value is None or isinstance(value, int | float):
            return value
        return clean(str(value), self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(arg) for arg in record.args)
        elif record.args:
            record.args = {key: self._clean(arg) for key, arg in record.args.items()}
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            text = "".join(_traceback(record.exc_info[1], self.secrets, set()))
            record.exc_text = text.removesuffix("\n")
        return True


def _traceback(exc: BaseException, secrets: list[str], seen: set[int]) -> list[str]:
    """`exc`'s traceback as Python prints it, causes and contexts first, with the frames on their
    own lines but each exception's message (which may hold a client's text) on one: cleaned."""
    seen.add(id(exc))
    lines: list[str] = []
    cause, context = exc.__cause__, exc.__context__
    if cause is not None and id(cause) not in seen:
        lines += _traceback(cause, secrets, seen)
        lines.append("\nThe above exception was the direct cause of the following exception:\n\n")
    elif context is not None and not exc.__suppress_context__ and id(context) not in seen:
        lines += _traceback(context, secrets, seen)
        lines.append("\nDuring handling of the above exception, another exception occurred:\n\n")
    if exc.__traceback__ is not None:
        lines.append("Traceback (most recent call last):\n")
        lines += [redact(frame, secrets) for frame in traceback.format_tb(exc.__traceback__)]
    lines += [
        clean(line.removesuffix("\n"), secrets) + "\n"
        for line in traceback.format_exception_only(type(exc), exc)
    ]
    group = getattr(exc, "exceptions", None)  # an ExceptionGroup's (Python 3.11)
    if isinstance(group, tuple):
        for number, inner in enumerate(group, 1):
            lines.append(f"+---- {number} of {len(group)} in the group:\n")
            lines += _traceback(inner, secrets, seen)
    return lines


class CleanRecords:
    """A log record factory: the records of `make`, cleaned by `log_filter`."""

    def __init__(self, make: Callable[..., logging.LogRecord], log_filter: CleanLogFilter) -> None:
        self.make = make
        self.log_filter = log_filter

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.make(*args, **kwargs)
        self.log_filter.filter(record)
        trace_id = tracing.trace_id()
        if trace_id is not None:
            record.trace_id = trace_id
            record.msg = f"{record.msg} [trace_id={trace_id}]"
        return record


def install(secrets: Iterable[str] = ()) -> None:
    """Clean every log record of this process from now on (replacing an earlier install, so a
    second app in the process brings its own keys)."""
    make = logging.getLogRecordFactory()
    if isinstance(make, CleanRecords):
        make = make.make
    logging.setLogRecordFactory(CleanRecords(make, CleanLogFilter(secrets)))
