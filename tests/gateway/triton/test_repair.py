"""Model repair's bookkeeping, with a real gRPC client whose reloads fail at once (nothing listens
on its port): one reload per model at a time, at most one per interval, each counted and logged;
and against the real Triton, a model that cannot be loaded. Reloads that work, of models whose
stubs were killed, are in tests/faults/test_model_repair.py."""

from __future__ import annotations

import asyncio
import logging

import pytest
import tritonclient.grpc.aio as grpcclient
from prometheus_client import REGISTRY

from gateway.triton.repair import LOAD_ATTEMPTS, ModelRepair
from picmetric.triton_server import TritonServer
from tests.utils.ports import free_port

REASON = "Stub process 'resnet50_0_0' is not healthy."


def _repairs(model: str, outcome: str) -> float:
    labels = {"model": model, "outcome": outcome}
    return REGISTRY.get_sample_value("picmetric_model_repairs_total", labels) or 0.0


async def _unreachable_triton() -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(f"127.0.0.1:{free_port()}")


def test_model_repair_runs_one_reload_per_model_at_a_time_in_the_background(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[list[bool], list[str], list[str]]:
        repair = ModelRepair(await _unreachable_triton(), interval_s=0)
        started = [repair.request("resnet50", REASON), repair.request("resnet50", REASON)]
        started.append(repair.request("mtcnn_pnet", REASON))
        running = repair.running()
        await repair.wait()
        left = repair.running()
        await repair.client.close()
        return started, running, left

    failed = _repairs("resnet50", "failed")
    with caplog.at_level(logging.INFO, logger="gateway.triton.repair"):
        started, running, left = asyncio.run(scenario())
    assert started == [True, False, True]  # the second resnet50 request found one running
    assert running == ["mtcnn_pnet", "resnet50"] and left == []
    assert _repairs("resnet50", "failed") == failed + 1
    messages = [record.getMessage() for record in caplog.records]
    assert f"Model resnet50 is unhealthy ({REASON}); reloading it through Triton" in messages
    assert any(m.startswith("Could not unload model resnet50 from Triton") for m in messages)


def test_model_repair_is_rate_limited_per_model() -> None:
    async def scenario() -> list[bool]:
        repair = ModelRepair(await _unreachable_triton(), interval_s=30)
        first = repair.request("resnet50", REASON)
        await repair.wait()
        answers = [first, repair.request("resnet50", REASON), repair.request("yolov3", REASON)]
        await repair.close()
        await repair.client.close()
        return answers

    # resnet50 again within 30 s: no; another model: yes.
    assert asyncio.run(scenario()) == [True, False, True]


@pytest.mark.integration
def test_model_repair_load_that_keeps_failing_is_tried_a_bounded_number_of_times(
    triton: TritonServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Triton refuses to load a model its repository does not hold: tried LOAD_ATTEMPTS times,
    then counted as failed, with what to do next in the log."""

    async def scenario() -> None:
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        repair = ModelRepair(client, interval_s=0.1, admin_key=triton.admin_key)
        assert repair.request("no_such_model", REASON)
        await repair.wait()
        await repair.client.close()

    failed = _repairs("no_such_model", "failed")
    with caplog.at_level(logging.INFO, logger="gateway.triton.repair"):
        asyncio.run(scenario())
    assert _repairs("no_such_model", "failed") == failed + 1
    assert _repairs("no_such_model", "reloaded") == 0
    tries = [r.getMessage() for r in caplog.records if "into Triton failed" in r.getMessage()]
    assert len(tries) == LOAD_ATTEMPTS
    assert "POST /v2/repository/models/no_such_model/load" in tries[-1]


@pytest.mark.integration
def test_model_repair_without_the_admin_key_is_refused_and_says_which_setting(
    triton: TritonServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Triton's repository API is locked (core/triton_admin.py): a gateway without
    PICMETRIC_TRITON_ADMIN_KEY cannot reload, and its log names the setting."""

    async def scenario() -> None:
        repair = ModelRepair(grpcclient.InferenceServerClient(triton.grpc_url), interval_s=0.1)
        assert repair.request("resnet50", REASON)
        await repair.wait()
        await repair.client.close()

    failed = _repairs("resnet50", "failed")
    with caplog.at_level(logging.INFO, logger="gateway.triton.repair"):
        asyncio.run(scenario())
    assert _repairs("resnet50", "failed") == failed + 1
    (refused,) = [r.getMessage() for r in caplog.records if "Could not unload" in r.getMessage()]
    assert "restricted" in refused and "set PICMETRIC_TRITON_ADMIN_KEY" in refused
