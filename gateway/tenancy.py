"""Whose an analysis is, and what of its source another reader may see.

An analysis belongs to the API key that made it. The store keeps an owner, never the key: the
SHA-256 of the key in hex (a configured key is a long random secret, so the hash cannot be turned
back into it), whose first 12 digits are the key's id in the rate-limit settings
(gateway.ratelimit.key_id), so an operator finds a key's analyses by its id. Without configured
keys every client is the one anonymous owner. URLs are stored and logged without their
userinfo (`user:password@`), query string and fragment, where clients put tokens."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit, urlunsplit

ANONYMOUS = "anonymous"


def owner_of(key: str | None) -> str:
    """The owner stored for analyses made with `key` (None: no key, the anonymous owner)."""
    if key is None:
        return ANONYMOUS
    return hashlib.sha256(key.encode()).hexdigest()


def stored_source(kind: str, source: str) -> str:
    """An analysis's source (of `kind` url, s3 or upload) as stored, answered and logged: an
    upload's name as it is, a URL as `public_url`."""
    return source if kind == "upload" else public_url(source)


def public_url(url: str) -> str:
    """`url` as it may be stored, answered and logged: scheme, host, port and path only."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # not a URL we could have fetched; keep nothing that might be a secret
        return re.sub(r"//[^/]*@", "//", url.split("?", 1)[0].split("#", 1)[0])
    if not parts.scheme or not parts.netloc:
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
