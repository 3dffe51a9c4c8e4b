"""The replicas behind the target, with fake clients (no network): analyses in turn, a replica
that stops answering out of rotation and back once the probe finds it ready, a dns target's
replicas following its resolution, a retry after "going away" sent to another replica, and a
dead stub reported to the replica that met it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from tritonclient.utils import InferenceServerException

from gateway.errors import ModelUnavailable
from gateway.results import Detection, Label, Options
from gateway.services import Services
from gateway.settings import Settings
from gateway.triton.catalog import ModelCatalog
from gateway.triton.inference import Call, ModelSpec, Prepared, _infer, prepare_resnet50
from gateway.triton.replicas import FAILURES_OUT, Replicas

STOPPING = InferenceServerException(
    "Server is stopping, scheduler for model has stopped accepting new inference requests",
    "StatusCode.UNAVAILABLE",
)


class FakeClient:
    """A Triton client that answers `answer` (an exception is raised) and says whether ready."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.answer: object = "tabby"
        self.ready = True
        self.closed = False
        self.reloads: list[str] = []

    async def unload_model(self, model: str, **kwargs: object) -> None:
        pass

    async def load_model(self, model: str, **kwargs: object) -> None:
        self.reloads.append(model)

    async def is_server_ready(self, **kwargs: object) -> bool:
        return self.ready

    async def is_model_ready(self, *args: object, **kwargs: object) -> bool:
        return self.ready

    async def infer(self, *args: object, **kwargs: object) -> str:
        if isinstance(self.answer, Exception):
            raise self.answer
        return str(self.answer)

    async def close(self) -> None:
        self.closed = True


def _replicas(target: str, resolved: list[list[str]] | None = None, **kwargs: float) -> Replicas:
    answers = iter(resolved or [])

    async def resolver(name: str, port: int) -> list[str]:
        return next(answers)

    return Replicas(target, FakeClient, resolver=resolver, **kwargs)  # type: ignore[arg-type]


def _gauge(state: str) -> float | None:
    return REGISTRY.get_sample_value("picmetric_triton_replicas", {"state": state})


def test_replicas_take_analyses_in_turn() -> None:
    replicas = _replicas("ipv4:127.0.0.2:8001,127.0.0.3:8001,127.0.0.4:8001")
    picked = Counter(replicas.next().address for _ in range(30))
    assert picked == {f"127.0.0.{n}:8001": 10 for n in (2, 3, 4)}
    assert _gauge("in_rotation") == 3 and _gauge("out") == 0


def test_replica_out_of_rotation_after_unanswered_calls_and_back_when_ready() -> None:
    async def scenario() -> None:
        replicas = _replicas("ipv4:127.0.0.2:8001,127.0.0.3:8001", probe_s=0.05)
        await replicas.start()
        down, up = replicas.all
        down.client.ready = False  # type: ignore[attr-defined]
        for _ in range(FAILURES_OUT - 1):
            replicas.reached(down, answered=False)
        replicas.reached(up, answered=False)
        replicas.reached(up, answered=True)  # an answer starts its count again
        assert down.in_rotation and up.in_rotation
        replicas.reached(down, answered=False)
        assert not down.in_rotation and _gauge("out") == 1
        assert {replicas.next().address for _ in range(6)} == {up.address}
        await asyncio.sleep(0.2)
        assert not down.in_rotation  # the probe finds it not ready
        down.client.ready = True  # type: ignore[attr-defined]
        await asyncio.sleep(0.2)
        assert down.in_rotation and _gauge("in_rotation") == 2
        await replicas.close()
        assert all(r.client.closed for r in (down, up))  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_no_replica_in_rotation_sends_analyses_to_all() -> None:
    replicas = _replicas("ipv4:127.0.0.2:8001,127.0.0.3:8001")
    for replica in replicas.all:
        for _ in range(FAILURES_OUT):
            replicas.reached(replica, answered=False)
    assert {replicas.next().address for _ in range(4)} == {"127.0.0.2:8001", "127.0.0.3:8001"}


def test_dns_target_follows_its_resolution() -> None:
    """A replica added to the name's answer joins; one gone from it is retired, its client closed
    once calls in flight had their time."""
    resolved = [["10.0.0.1:8001"], ["10.0.0.1:8001", "10.0.0.2:8001"], ["10.0.0.2:8001"]]

    async def scenario() -> None:
        replicas = _replicas("dns:///triton:8001", resolved, probe_s=0.05, resolve_s=0.1)
        with pytest.raises(ModelUnavailable, match="resolves to no address"):
            replicas.next()
        await replicas.start()
        assert [r.address for r in replicas.all] == ["10.0.0.1:8001"]
        first = replicas.all[0]
        await asyncio.sleep(0.13)
        assert [r.address for r in replicas.all] == ["10.0.0.1:8001", "10.0.0.2:8001"]
        await asyncio.sleep(0.13)
        assert [r.address for r in replicas.all] == ["10.0.0.2:8001"]
        assert not first.client.closed  # type: ignore[attr-defined]  # its grace runs
        await replicas.close()
        assert first.client.closed  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_dns_failure_keeps_the_replicas_known() -> None:
    async def scenario() -> None:
        calls = 0

        async def resolver(name: str, port: int) -> list[str]:
            nonlocal calls
            calls += 1
            if calls > 1:
                raise OSError("Temporary failure in name resolution")
            return ["10.0.0.1:8001"]

        replicas = Replicas("triton:8001", FakeClient, resolver=resolver, resolve_s=0.05)  # type: ignore[arg-type]
        replicas.probe_s = 0.05
        await replicas.start()
        await asyncio.sleep(0.2)
        assert calls >= 2 and [r.address for r in replicas.all] == ["10.0.0.1:8001"]
        await replicas.close()

    asyncio.run(scenario())


async def _infer_first(
    call: Call, prepared: Prepared, options: Options, priority: int
) -> Sequence[Detection]:
    answer = await call.client.infer()  # type: ignore[call-arg]
    return [Label(label=answer, confidence=0.9)]


SPEC = ModelSpec("resnet50", "resnet50", "resnet50", prepare_resnet50, _infer_first, 224)


def _services(replicas: Replicas, tmp_path: Path) -> Services:
    """Services with these replicas and a catalog; nothing else is used here."""
    settings = Settings(triton_grpc_url=replicas.target_text, model_repository=tmp_path)
    unused = dict.fromkeys(
        ("http", "s3", "store", "jobs", "admission", "fetches", "decode_memory", "rate_limiter")
    )
    return Services(settings, replicas, catalog=ModelCatalog(tmp_path), **unused)  # type: ignore[arg-type]


def test_going_away_is_retried_on_another_replica_and_counted(tmp_path: Path) -> None:
    """The Services' Call: the first replica answers "Server is stopping", the retry goes to the
    other replica; the stopping one's unanswered call is counted against it."""

    async def scenario() -> None:
        replicas = _replicas("ipv4:127.0.0.2:8001,127.0.0.3:8001")
        services = _services(replicas, tmp_path)
        stopping, other = replicas.all
        stopping.client.answer = STOPPING  # type: ignore[attr-defined]
        other.client.answer = "served by the other"  # type: ignore[attr-defined]
        call = services.call(stopping)
        result = await _infer(SPEC, call, {}, Options(threshold=0.2, max_results=1), 0)
        assert [d.label for d in result.detections] == ["served by the other"]  # type: ignore[union-attr]
        assert stopping.failures == 1 and other.failures == 0

    asyncio.run(scenario())


def test_dead_stub_is_repaired_on_the_replica_that_met_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        replicas = _replicas("ipv4:127.0.0.2:8001,127.0.0.3:8001")
        services = _services(replicas, tmp_path)
        services.catalog.last_canary = 1.0
        sick, well = replicas.all
        services.dead_stub(sick, "resnet50", "Stub process 'resnet50_0_0' is not healthy")
        await sick.repair.wait()
        assert sick.client.reloads == ["resnet50"] and well.client.reloads == []  # type: ignore[attr-defined]
        assert services.catalog.last_canary is None

    asyncio.run(scenario())
