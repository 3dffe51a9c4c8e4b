"""The catalog reads each model's square input size from Triton, so the gateway letterboxes
for the size a model was converted with; its canary is not retried."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from core.models import OFFERED_MODELS
from gateway import metrics
from gateway.triton.catalog import ModelCatalog, Readiness, square_input_size
from gateway.triton.inference import Call
from gateway.triton.replicas import Replica, Replicas
from picmetric.triton_server import TritonServer


def test_square_input_size_needs_a_square_image_input() -> None:
    image = {"name": "image", "shape": ["-1", "608", "608", "3"]}
    assert square_input_size({"inputs": [image]}) == 608
    assert square_input_size({"inputs": [{**image, "shape": ["-1", "-1", "3"]}]}) is None
    assert square_input_size({"inputs": [{**image, "name": "pixels"}]}) is None


@pytest.mark.integration
def test_square_input_sizes_from_the_real_triton(triton: TritonServer) -> None:
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        sizes = {
            model: square_input_size(client.get_model_metadata(model, as_json=True))
            for model in OFFERED_MODELS
        }
    assert sizes == {"resnet50": 224, "yolov3": 416, "mtcnn": None}


class StoppingTriton:
    """Answers every inference as a Triton that got SIGTERM does; says every model is ready."""

    def __init__(self) -> None:
        self.calls = 0

    async def infer(self, *args: object, **kwargs: object) -> None:
        self.calls += 1
        message = "Server is stopping, scheduler for model has stopped accepting new requests"
        raise InferenceServerException(message, "StatusCode.UNAVAILABLE")

    async def is_model_ready(self, *args: object, **kwargs: object) -> bool:
        return True


def test_canary_is_not_retried_so_readiness_answers_promptly(tmp_path: Path) -> None:
    catalog = ModelCatalog(tmp_path)
    catalog.states["resnet50"].ready = True
    triton = StoppingTriton()
    call = Call(client=triton, timeout=5.0, repository=tmp_path, retry_wait=5.0)  # type: ignore[arg-type]
    assert asyncio.run(catalog.canary(call)) is False
    assert triton.calls == 1 and catalog.last_canary is None


class PartialTriton:
    """A live Triton that serves only `models` (None: not reachable)."""

    def __init__(self, address: str, models: set[str] | None) -> None:
        self.address, self.models = address, models

    async def is_server_live(self, **kwargs: object) -> bool:
        if self.models is None:
            raise InferenceServerException("failed to connect", "StatusCode.UNAVAILABLE")
        return True

    async def is_model_ready(self, model: str, **kwargs: object) -> bool:
        return model in (self.models or set())

    async def get_model_metadata(self, model: str, **kwargs: object) -> dict[str, object]:
        return {"versions": ["1"], "inputs": []}


def _refreshed(tmp_path: Path, served: dict[str, set[str] | None]) -> ModelCatalog:
    replicas = Replicas(
        "ipv4:" + ",".join(served),
        lambda address: PartialTriton(address, served[address]),  # type: ignore[arg-type, return-value]
    )
    catalog = ModelCatalog(tmp_path)
    asyncio.run(catalog.refresh(replicas))
    return catalog


def test_catalog_reports_each_replica_and_needs_one_serving_every_model(tmp_path: Path) -> None:
    """A model is ready when some replica serves it; /readyz needs one replica serving all."""
    split = _refreshed(
        tmp_path, {"10.0.0.1:8001": {"resnet50"}, "10.0.0.2:8001": {"yolov3", "mtcnn"}}
    )
    assert split.ready_models() == ["resnet50", "yolov3", "mtcnn"]
    assert not any(state.serves_all() for state in split.replicas)
    whole = _refreshed(tmp_path, {"10.0.0.1:8001": None, "10.0.0.2:8001": set(OFFERED_MODELS)})
    assert [state.serves_all() for state in whole.replicas] == [False, True]
    assert whole.live and whole.replicas[0].report() == {
        "address": "10.0.0.1:8001",
        "in_rotation": True,
        "live": False,
        "models": dict.fromkeys(OFFERED_MODELS, False),
    }


class FailingTriton(PartialTriton):
    """Serves every model and fails every inference after `delay` seconds, counting them."""

    def __init__(self, address: str, delay: float = 0.2) -> None:
        super().__init__(address, set(OFFERED_MODELS))
        self.delay, self.inferences = delay, 0

    async def infer(self, *args: object, **kwargs: object) -> None:
        self.inferences += 1
        await asyncio.sleep(self.delay)
        raise InferenceServerException("model failed", "StatusCode.INTERNAL")


def _failing(tmp_path: Path) -> tuple[ModelCatalog, Replicas, FailingTriton]:
    triton = FailingTriton("10.0.0.1:8001")
    replicas = Replicas("10.0.0.1:8001", lambda address: triton)  # type: ignore[arg-type, return-value]
    catalog = ModelCatalog(tmp_path, canary_max_age_s=60.0, canary_retry_s=60.0)
    return catalog, replicas, triton


def _calls(tmp_path: Path) -> Callable[[Replica], Call]:
    return lambda replica: Call(client=replica.client, timeout=5.0, repository=tmp_path)


def test_concurrent_readiness_checks_share_one_canary_and_a_failure_is_kept(
    tmp_path: Path,
) -> None:
    """12 checks at once run one canary (one inference per model); the checks after it, within
    canary_retry_s of its failure, run none."""
    catalog, replicas, triton = _failing(tmp_path)

    async def run() -> list[Readiness]:
        first = await asyncio.gather(
            *(catalog.readiness(replicas, _calls(tmp_path)) for _ in range(12))
        )
        later = [await catalog.readiness(replicas, _calls(tmp_path)) for _ in range(12)]
        return [*first, *later]

    answers = asyncio.run(run())
    assert triton.inferences == len(OFFERED_MODELS)
    assert not any(answer.ready for answer in answers)
    assert answers[-1].report["canary_ok"] is False and catalog.last_canary_failure is not None


def test_a_cancelled_caller_leaves_the_check_to_the_others(tmp_path: Path) -> None:
    catalog, replicas, triton = _failing(tmp_path)

    async def run() -> Readiness:
        gone = asyncio.create_task(catalog.readiness(replicas, _calls(tmp_path)))
        waiting = asyncio.create_task(catalog.readiness(replicas, _calls(tmp_path)))
        await asyncio.sleep(0.05)  # both are waiting on the canary
        gone.cancel()
        answer = await waiting
        assert gone.cancelled()
        return answer

    answer = asyncio.run(run())
    assert answer.report["canary_ok"] is False  # the canary ran to its end
    assert triton.inferences == len(OFFERED_MODELS)


class QueuedTriton(PartialTriton):
    """Serves every model; each inference waits `queue_s` in a queue (or until the caller's
    deadline, then DEADLINE_EXCEEDED), then answers nothing useful (the canary fails later)."""

    def __init__(self, address: str, queue_s: float) -> None:
        super().__init__(address, set(OFFERED_MODELS))
        self.queue_s, self.inferences, self.deadlines = queue_s, 0, []

    async def infer(self, *args: object, client_timeout: float | None = None, **kw: object) -> None:
        self.inferences += 1
        self.deadlines.append(client_timeout)
        await asyncio.sleep(min(self.queue_s, client_timeout or self.queue_s))
        raise InferenceServerException("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED")


def _queued(tmp_path: Path, queue_s: float) -> tuple[ModelCatalog, Replicas, QueuedTriton]:
    triton = QueuedTriton("10.0.0.1:8001", queue_s)
    replicas = Replicas("10.0.0.1:8001", lambda address: triton)  # type: ignore[arg-type, return-value]
    return ModelCatalog(tmp_path, canary_max_age_s=60.0, canary_retry_s=0.01), replicas, triton


def _long_calls(tmp_path: Path) -> Callable[[Replica], Call]:
    """Calls with the analyses' deadline (30 s), as the gateway makes them."""
    return lambda replica: Call(client=replica.client, timeout=30.0, repository=tmp_path)


def test_an_answered_inference_proves_triton_and_no_canary_runs(tmp_path: Path) -> None:
    """An analysis' model result since the last check is proof enough: no canary goes into the
    queue, and the report says why it is ready."""
    catalog, replicas, triton = _queued(tmp_path, queue_s=60.0)
    metrics.INFERENCE_SECONDS.labels("resnet50").observe(0.5)  # an analysis' answer
    answer = asyncio.run(catalog.readiness(replicas, _long_calls(tmp_path)))
    assert answer.ready and answer.report["proof"] == "answer"
    assert triton.inferences == 0


def test_the_canary_has_a_short_deadline_of_its_own(tmp_path: Path) -> None:
    """Nothing proved Triton: the canary runs, with CANARY_TIMEOUT_S rather than the analyses'
    30 s, so a canary behind a long queue fails in seconds."""
    catalog, replicas, triton = _queued(tmp_path, queue_s=60.0)
    catalog.canary_timeout_s = 0.3
    started = time.monotonic()
    answer = asyncio.run(catalog.readiness(replicas, _long_calls(tmp_path)))
    assert time.monotonic() - started < 5
    assert not answer.ready and answer.report["proof"] is None
    assert triton.inferences == len(OFFERED_MODELS)
    assert set(triton.deadlines) == {0.3}


def test_probes_during_a_check_get_the_last_verdict_at_once(tmp_path: Path) -> None:
    """A verdict exists: a probe that arrives while the next check's canary waits is answered
    with the last verdict at once, not after the canary; the verdict changes only when the
    canary has failed."""
    catalog, replicas, triton = _queued(tmp_path, queue_s=1.0)
    catalog.last_canary = time.monotonic()  # a canary worked just now

    async def run() -> tuple[Readiness, float, Readiness, Readiness]:
        first = await catalog.readiness(replicas, _long_calls(tmp_path))
        catalog.last_canary = None  # too old now: the next check runs a canary (1 s queue)
        checking = asyncio.create_task(catalog.readiness(replicas, _long_calls(tmp_path)))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        during = await catalog.readiness(replicas, _long_calls(tmp_path))
        waited = time.monotonic() - started
        return first, waited, during, await checking

    first, waited, during, after = asyncio.run(run())
    assert first.ready and during.ready and waited < 0.1
    assert not after.ready and triton.inferences == len(OFFERED_MODELS)


def test_no_canary_joins_the_queue_while_analyses_are_in_flight(tmp_path: Path) -> None:
    """Analyses in flight, none answered since the last proof: no canary is sent (it would wait
    behind them), and the verdict stays ready for canary_max_age_s plus the analyses' deadline
    after the last proof; past that, the canary runs and its failure turns it unready."""
    catalog, replicas, triton = _queued(tmp_path, queue_s=60.0)
    catalog.canary_timeout_s = 0.2
    metrics.ANALYSES_IN_FLIGHT.inc()
    try:
        catalog.last_canary = time.monotonic() - 70  # older than 60 s, within 60 + 30
        busy = asyncio.run(catalog.readiness(replicas, _long_calls(tmp_path)))
        assert busy.ready and busy.report["proof"] == "in_flight" and triton.inferences == 0
        catalog.last_canary = time.monotonic() - 95  # past 60 + 30: Triton did not answer
        stale = asyncio.run(catalog.readiness(replicas, _long_calls(tmp_path)))
        assert not stale.ready and triton.inferences == len(OFFERED_MODELS)
    finally:
        metrics.ANALYSES_IN_FLIGHT.dec()


def test_a_dead_stub_forgets_the_answers_too(tmp_path: Path) -> None:
    """gateway/services.py forgets the canary when a call found a model's stub dead; the
    analyses' answers before it prove nothing either: the next check runs a canary."""
    catalog, replicas, triton = _queued(tmp_path, queue_s=60.0)
    catalog.canary_timeout_s = 0.2
    metrics.INFERENCE_SECONDS.labels("resnet50").observe(0.5)
    assert asyncio.run(catalog.readiness(replicas, _long_calls(tmp_path))).ready
    metrics.INFERENCE_SECONDS.labels("resnet50").observe(0.5)
    catalog.last_canary = None
    answer = asyncio.run(catalog.readiness(replicas, _long_calls(tmp_path)))
    assert not answer.ready and triton.inferences == len(OFFERED_MODELS)
