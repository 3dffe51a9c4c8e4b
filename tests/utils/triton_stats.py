"""Reading Triton's statistics in tests: a model reports them just after it answered, so a read
right after a reply may trail it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import tritonclient.grpc as grpcclient

T = TypeVar("T")


def settled(read: Callable[[], T], quiet_s: float = 0.3, timeout_s: float = 10.0) -> T:
    """Call `read` until its value has not changed for `quiet_s` seconds; fail the test when it
    still changes after `timeout_s` (a value read mid-change would make its caller's count wrong).
    """
    last = read()
    still_since = time.monotonic()
    deadline = still_since + timeout_s
    while time.monotonic() - still_since < quiet_s:
        if time.monotonic() > deadline:
            pytest.fail(f"Triton's statistics were still changing after {timeout_s:g} s")
        time.sleep(0.05)
        value = read()
        if value != last:
            last, still_since = value, time.monotonic()
    return last


def inference_count(grpc_url: str, model: str) -> int:
    """How many inferences `model` has run on the Triton at `grpc_url`, once its statistics
    have settled."""
    with grpcclient.InferenceServerClient(grpc_url) as client:

        def read() -> int:
            stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
            return int(stats.get("inference_count", 0))

        return settled(read)
