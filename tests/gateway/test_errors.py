"""The gateway's error vocabulary (gateway/errors.py) as the README lists it for clients."""

from __future__ import annotations

import re

from core.paths import PROJECT_ROOT
from gateway.errors import HTTP_ERROR, error_kinds


def _errortypes() -> set[str]:
    """Every errortype an answer can carry: each PicmetricError's, and any other HTTP refusal's."""
    return {kind.errortype for kind in error_kinds()} | {HTTP_ERROR}


def test_the_readme_lists_every_errortype_with_its_status() -> None:
    """A client reads the README's list to handle errors (it lacked http_error)."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    listed = readme.split("Errors (`errortype`, HTTP status):")[1].split("A request never")[0]
    named = set(re.findall(r"`([a-z_]+)`", listed))
    missing = _errortypes() - named
    assert not missing, f"README's error list lacks {sorted(missing)}"
