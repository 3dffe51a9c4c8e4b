"""Triton's request priorities through the gateway's own call (`inference.infer_resnet50`'s
`priority`) against a real Triton serving the committed resnet50 config (2 priority levels,
batches of up to 32, one instance): with bulk requests (priority 2) queued behind a running batch,
an interactive request sent after them is executed in the next batch, before most of them. Shown
by the order in which the answers come back, not by a timing bound."""

from __future__ import annotations

import asyncio
import re

import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient

from core.model_config import BULK_PRIORITY, INTERACTIVE_PRIORITY, read_config
from core.paths import MODEL_REPOSITORY
from core.preprocessing import resize_for_resnet50
from gateway.results import Options
from gateway.triton.inference import Call, infer_resnet50
from picmetric.triton_server import TritonServer

pytestmark = pytest.mark.integration

BATCH = read_config(MODEL_REPOSITORY / "resnet50").max_batch_size  # 32
QUEUED = BATCH + 8  # bulk requests waiting: more than one batch
PENDING = re.compile(r'^nv_inference_pending_request_count\{model="resnet50",[^}]*\} (\S+)$', re.M)


async def _pending(metrics: httpx.AsyncClient, url: str) -> int:
    """Requests waiting in resnet50's queue (Triton's metric; not those executing)."""
    found = PENDING.search((await metrics.get(url)).text)
    return int(float(found[1])) if found else 0


async def _answered_before(triton: TritonServer, photo: np.ndarray, priority: int) -> int:
    """How many of QUEUED bulk requests, sent while a full batch runs, are answered before one
    request at `priority` sent after them."""
    one = resize_for_resnet50(photo)[None]
    options = Options(threshold=0.0, max_results=1)
    answered: list[str] = []
    async with (
        grpcclient.InferenceServerClient(triton.grpc_url) as client,
        httpx.AsyncClient() as metrics,
    ):
        call = Call(client=client, timeout=120, repository=MODEL_REPOSITORY)

        async def infer(name: str, image: np.ndarray, level: int) -> None:
            await infer_resnet50(call, {"image": image}, options, level)
            answered.append(name)

        async with asyncio.TaskGroup() as group:
            group.create_task(infer("running", np.repeat(one, BATCH, axis=0), BULK_PRIORITY))
            await asyncio.sleep(0.5)  # its 4.8 MB on their way first; the asserts check it
            for n in range(QUEUED):
                group.create_task(infer(f"bulk {n}", one, BULK_PRIORITY))
            async with asyncio.timeout(30):  # the full batch runs, every bulk request waits
                while await _pending(metrics, triton.metrics_url) != QUEUED:
                    await asyncio.sleep(0.01)
            assert answered == [], "the running batch ended before the test could queue"
            group.create_task(infer("sent last", one, priority))
    assert answered[0] == "running"
    return answered.index("sent last") - 1


def test_an_interactive_request_overtakes_queued_bulk_requests(
    triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    photo = photos["astronaut"]
    # At the interactive level it joins the next batch: at most BATCH - 1 bulk answers before it.
    assert asyncio.run(_answered_before(triton, photo, INTERACTIVE_PRIORITY)) < BATCH
    # At the bulk level it waits its turn behind a whole batch of them (the test's control).
    assert asyncio.run(_answered_before(triton, photo, BULK_PRIORITY)) >= BATCH
