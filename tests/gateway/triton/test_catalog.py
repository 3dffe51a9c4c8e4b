"""The catalog reads each model's square input size from Triton, so the gateway letterboxes
for the size a model was converted with; its canary is not retried."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from core.models import OFFERED_MODELS
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
