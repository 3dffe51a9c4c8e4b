"""Triton's request priorities through the gateway's own calls (`inference.infer_resnet50` and
`infer_mtcnn`, their `priority`) against a real Triton serving the committed configs (2 priority
levels): with bulk requests (priority 2) queued behind running ones, an interactive request sent
after them is executed before them; sent at the bulk level instead it waits its turn (the
control). Shown by the order in which the answers come back, not by a timing bound."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence

import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient

from core.model_config import BULK_PRIORITY, INTERACTIVE_PRIORITY, read_config
from core.paths import MODEL_REPOSITORY
from core.preprocessing import resize_for_resnet50
from gateway.results import Detection, Options
from gateway.triton.inference import Call, Prepared, infer_mtcnn, infer_resnet50
from picmetric.triton_server import TritonServer
from tests.utils.real_photos import real_photo

pytestmark = pytest.mark.integration

Infer = Callable[[Call, Prepared, Options, int], Awaitable[Sequence[Detection]]]
OPTIONS = Options(threshold=0.0, max_results=1)


async def _pending(metrics: httpx.AsyncClient, url: str, model: str) -> int:
    """Requests waiting in `model`'s queue (Triton's metric; not those executing)."""
    line = rf'^nv_inference_pending_request_count\{{model="{model}",[^}}]*\}} (\S+)$'
    found = re.search(line, (await metrics.get(url)).text, re.M)
    return int(float(found[1])) if found else 0


async def _answered_before(
    triton: TritonServer,
    model: str,
    infer: Infer,
    running: list[Prepared],
    queued: Prepared,
    count: int,
    priority: int,
) -> int:
    """How many of `count` bulk requests, sent while `running` occupy every instance, are
    answered before one more request at `priority` sent after them."""
    answered: list[str] = []
    async with (
        grpcclient.InferenceServerClient(triton.grpc_url) as client,
        httpx.AsyncClient() as metrics,
    ):
        call = Call(client=client, timeout=120, repository=MODEL_REPOSITORY)

        async def send(name: str, prepared: Prepared, level: int) -> None:
            await infer(call, prepared, OPTIONS, level)
            answered.append(name)

        async with asyncio.TaskGroup() as group:
            for prepared in running:
                group.create_task(send("running", prepared, BULK_PRIORITY))
            await asyncio.sleep(0.5)  # on their way first; the asserts below check it
            for n in range(count):
                group.create_task(send(f"bulk {n}", queued, BULK_PRIORITY))
            async with asyncio.timeout(30):  # the running ones run, every bulk one waits
                while await _pending(metrics, triton.metrics_url, model) != count:
                    await asyncio.sleep(0.01)
            assert answered == [], "the running requests ended before the test could queue"
            group.create_task(send("sent last", queued, priority))
    assert answered[: len(running)].count("running") >= len(running) - 1
    return sum(1 for name in answered[: answered.index("sent last")] if name.startswith("bulk"))


def test_an_interactive_request_overtakes_queued_bulk_requests_in_a_batched_model(
    triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    """resnet50: one instance, batches of up to 32. Behind a full batch, 40 bulk requests wait;
    an interactive one joins the next batch (at most 31 of them before it), a bulk one waits
    for a whole batch of them."""
    batch = read_config(MODEL_REPOSITORY / "resnet50").max_batch_size
    one = resize_for_resnet50(photos["astronaut"])[None]
    running = [{"image": np.repeat(one, batch, axis=0)}]

    def before(priority: int) -> int:
        return asyncio.run(
            _answered_before(
                triton, "resnet50", infer_resnet50, running, {"image": one}, batch + 8, priority
            )
        )

    assert before(INTERACTIVE_PRIORITY) < batch
    assert before(BULK_PRIORITY) >= batch


def test_an_interactive_photo_overtakes_queued_bulk_photos_in_the_mtcnn_cascade(
    triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    """mtcnn: two instances, one photo each. Behind two running 3 MP photos, 6 small bulk
    photos wait; an interactive one takes the first instance that frees (at most the one bulk
    photo the other instance took may end before it), a bulk one waits for all but the last."""
    instances = read_config(MODEL_REPOSITORY / "mtcnn").instance_group[0].count
    large = {"image": real_photo(3)}
    small = {"image": np.ascontiguousarray(photos["astronaut"])}

    def before(priority: int) -> int:
        return asyncio.run(
            _answered_before(triton, "mtcnn", infer_mtcnn, [large] * instances, small, 6, priority)
        )

    assert before(INTERACTIVE_PRIORITY) <= 1
    assert before(BULK_PRIORITY) >= 5
