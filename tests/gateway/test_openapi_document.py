"""The OpenAPI document is the API's promise: a committed copy (openapi.json beside this file)
is compared byte for byte with what `create_app()` publishes under default settings, so a
refactor cannot change it unnoticed. After a deliberate change, regenerate the copy with
`python -m tests.gateway.test_openapi_document`."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.main import create_app

COPY = Path(__file__).with_name("openapi.json")


def openapi_document() -> str:
    """The document as stable text: keys sorted, two-space indent, a final newline."""
    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"


def test_openapi_document_matches_the_committed_copy() -> None:
    assert openapi_document() == COPY.read_text(encoding="utf-8")


if __name__ == "__main__":
    COPY.write_text(openapi_document(), encoding="utf-8")
