"""The shell scripts (bootstrap.sh, .ci/run, the install and lock scripts) under shellcheck."""

from __future__ import annotations

from tests.utils.commands import run_tool


def test_bootstrap_is_clean_under_shellcheck() -> None:
    run_tool("shellcheck", "bootstrap.sh", ".ci/run", "deploy/install.sh", "requirements/lock.sh")
