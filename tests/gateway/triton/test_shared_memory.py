"""Full-resolution inputs through Triton's system shared memory (gateway/triton/shared_memory.py)
against a real local Triton: the same answers as inside the gRPC request (faces equal to the mtcnn
package's), a bounded pool that holds no memory between calls, registrations dropped and files
unlinked on close and after a crash, a Triton that cannot use it (locked admin API, a remote
address) served over plain gRPC, and a restarted Triton that has forgotten the regions."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient

from core.triton_admin import grpc_admin_headers
from gateway.images.decode import DecodedImage
from gateway.results import FACE_KEYPOINTS, Face, Options
from gateway.services import TRITON_CHANNEL
from gateway.triton import shared_memory
from gateway.triton.inference import MODELS, Call, ModelResult, run_models
from gateway.triton.shared_memory import SHM_DIR, SharedInputs, loopback, wanted
from picmetric.repository import copy_models
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.mtcnn_faces import assert_same_faces, collage, oracle
from tests.utils.ports import free_port
from tests.utils.real_photos import decoded, jpeg_bytes, real_photo

pytestmark = pytest.mark.integration

SLOT_BYTES = 12_000_000 * 3
OPTIONS = Options(threshold=0.5, max_results=100)
MTCNN_MODELS = ("mtcnn", "mtcnn_pnet", "mtcnn_pyramid_pnet", "mtcnn_rnet", "mtcnn_onet")


def _image(rgb: np.ndarray) -> DecodedImage:
    return DecodedImage(np.ascontiguousarray(rgb), rgb.shape[1], rgb.shape[0])


def _ours() -> set[str]:
    return {p.name for p in SHM_DIR.glob(f"picmetric-*-{os.getpid()}-*")}


@asynccontextmanager
async def _client(server: TritonServer) -> AsyncIterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(server.grpc_url, channel_args=TRITON_CHANNEL)
    try:
        yield client
    finally:
        await client.close()


def _call(client: grpcclient.InferenceServerClient, address: str, shared: SharedInputs | None):
    return Call(client, 120.0, Path("."), address=address, shared=shared)


async def _faces(call: Call, rgb: np.ndarray) -> list[Face]:
    found, _ = await run_models([MODELS["mtcnn"]], call, _image(rgb), OPTIONS)
    result: ModelResult = found["mtcnn"]
    return list(result.detections)  # type: ignore[arg-type]


async def _registered(client: grpcclient.InferenceServerClient, key: str) -> set[str]:
    status = await client.get_system_shared_memory_status(headers=grpc_admin_headers(key))
    return set(status.regions)


def test_answers_are_the_same_through_shared_memory_and_inside_the_request(
    triton: TritonServer,
) -> None:
    """1 and 3 MP real-size photos and the faces collage: identical faces both ways, the
    collage's equal to the mtcnn package's; the pool's files hold no pages between calls; close
    unregisters and unlinks every region."""
    from mtcnn import MTCNN

    photos = {
        "1mp": decoded(jpeg_bytes(real_photo(1))),
        "3mp": decoded(jpeg_bytes(real_photo(3))),
        "collage": collage(),
    }

    async def both() -> None:
        shared = SharedInputs("auto", 2, SLOT_BYTES, triton.admin_key)
        async with _client(triton) as client:
            on, off = _call(client, triton.grpc_url, shared), _call(client, triton.grpc_url, None)
            for name, rgb in photos.items():
                through, inside = await _faces(on, rgb), await _faces(off, rgb)
                assert through == inside, name
                assert all(os.stat(r.path).st_blocks == 0 for r in shared.regions), name
            assert shared.shared_calls == len(photos)  # none went inside the request
            names = {r.name for r in shared.regions}
            assert names <= await _registered(client, triton.admin_key)
            faces = await _faces(on, photos["collage"])
            await shared.close({triton.grpc_url: client})
            # The session's Triton may hold other gateways' regions: only this pool's are gone.
            assert not _ours() and not names & await _registered(client, triton.admin_key)
        want = oracle(MTCNN(), photos["collage"])
        got = type(want)(
            np.array([[f.box.x_min, f.box.y_min, f.box.x_max, f.box.y_max] for f in faces]),
            np.array([f.confidence for f in faces]),
            np.array([[f.keypoints[k] for k in FACE_KEYPOINTS] for f in faces]),
        )
        assert_same_faces(got, want, "collage through shared memory")

    asyncio.run(both())


def test_a_triton_that_refuses_the_regions_is_served_inside_the_request_and_told_once(
    triton: TritonServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the admin key Triton refuses to register (its admin API is locked): the calls go
    inside the request, the reason is logged once, and the replica is not asked again."""
    photo = decoded(jpeg_bytes(real_photo(1)))

    async def refused() -> None:
        shared = SharedInputs("on", 1, SLOT_BYTES, admin_key=None)
        async with _client(triton) as client:
            call = _call(client, triton.grpc_url, shared)
            with caplog.at_level(logging.WARNING, "gateway.triton.shared_memory"):
                first, second = await _faces(call, photo), await _faces(call, photo)
            assert first == second and shared.shared_calls == 0
            assert not shared.in_use(triton.grpc_url)
            warnings = [r for r in caplog.records if "cannot use" in r.getMessage()]
            assert len(warnings) == 1 and "restricted" in warnings[0].getMessage()
            await shared.close({triton.grpc_url: client})

    asyncio.run(refused())


def test_only_loopback_replicas_get_shared_memory_in_auto_and_none_when_off() -> None:
    assert loopback("127.0.0.1:8001") and loopback("[::1]:8001") and loopback("127.0.0.2:1")
    assert not loopback("10.0.0.7:8001") and not loopback("[fd00::1]:8001")
    assert wanted("auto", "127.0.0.1:8001") and not wanted("auto", "10.0.0.7:8001")
    assert wanted("on", "10.0.0.7:8001")  # registering there then fails: plain gRPC, said once
    assert not wanted("off", "127.0.0.1:8001")
    shared = SharedInputs("auto", 1, 1 << 20)
    try:
        assert shared.in_use("127.0.0.1:8001") and not shared.in_use("10.0.0.7:8001")
    finally:
        asyncio.run(shared.close({}))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_regions_of_a_killed_gateway_are_unlinked_and_unregistered(triton: TritonServer) -> None:
    """A gateway killed with its regions registered: the next one unlinks its files on start and
    drops its registrations when it registers; a live process's regions are left alone."""
    host = shared_memory._host_tag()
    dead = f"picmetric-{host}-{_dead_pid()}-0badcafe-0"
    alive = f"picmetric-{host}-{os.getppid()}-0badcafe-0"
    (SHM_DIR / dead).write_bytes(b"\0" * 4096)
    (SHM_DIR / alive).write_bytes(b"\0" * 4096)
    headers = grpc_admin_headers(triton.admin_key)

    async def restart() -> None:
        async with _client(triton) as client:
            for name in (dead, alive):
                await client.register_system_shared_memory(name, f"/{name}", 4096, headers=headers)
            shared = SharedInputs("auto", 1, SLOT_BYTES, triton.admin_key)
            assert not (SHM_DIR / dead).exists() and (SHM_DIR / alive).exists()
            await _faces(_call(client, triton.grpc_url, shared), real_photo(1))
            regions = await _registered(client, triton.admin_key)
            assert dead not in regions and alive in regions
            await client.unregister_system_shared_memory(alive, headers=headers)
            await shared.close({triton.grpc_url: client})

    try:
        asyncio.run(restart())
    finally:
        (SHM_DIR / alive).unlink(missing_ok=True)


def test_the_pool_is_bounded_and_a_call_beyond_it_goes_inside_the_request(
    triton: TritonServer,
) -> None:
    """Three calls at once on a one-region pool: one through shared memory, two inside their
    requests, all with the same faces."""
    photo = decoded(jpeg_bytes(real_photo(1)))

    async def three() -> None:
        shared = SharedInputs("auto", 1, SLOT_BYTES, triton.admin_key)
        async with _client(triton) as client:
            call = _call(client, triton.grpc_url, shared)
            await _faces(call, photo)  # registered before the race
            answers = await asyncio.gather(*(_faces(call, photo) for _ in range(3)))
            assert answers[0] == answers[1] == answers[2]
            assert shared.shared_calls == 2 and len(_ours()) == 1
            await shared.close({triton.grpc_url: client})

    asyncio.run(three())


@pytest.fixture(scope="module")
def own_triton(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """A Triton of its own (mtcnn's models only), for a test to restart."""
    repository = copy_models(list(MTCNN_MODELS), tmp_path_factory.mktemp("mtcnn_repository"))
    for model in MTCNN_MODELS[1:]:
        (repository / model / "1").mkdir(exist_ok=True)
        (repository / model / "1" / "model.onnx").symlink_to(
            model_repository / model / "1" / "model.onnx"
        )
    ports = TritonPorts(free_port(), free_port(), free_port())
    log_file = tmp_path_factory.mktemp("own_triton") / "tritonserver.log"
    with TritonServer(repository, ports, log_file=log_file) as server:
        yield server


def test_a_restarted_triton_gets_the_regions_registered_again(
    own_triton: TritonServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Triton stopped and started again on its ports has forgotten the regions: the next call
    registers them anew and is answered through shared memory, with the same faces."""
    photo = decoded(jpeg_bytes(real_photo(1)))

    async def restarted() -> None:
        shared = SharedInputs("auto", 1, SLOT_BYTES, own_triton.admin_key)
        async with _client(own_triton) as client:
            call = _call(client, own_triton.grpc_url, shared)
            before = await _faces(call, photo)
            # From this thread, which outlives the server (TritonServer.launch).
            own_triton.stop()
            own_triton.start()
            assert not await _registered(client, own_triton.admin_key)
            with caplog.at_level(logging.WARNING, "gateway.triton.inference"):
                assert await _faces(call, photo) == before
            # The first try named a region the new Triton did not know; the second was served.
            assert shared.shared_calls == 3
            assert "Unable to find shared memory region" in caplog.text
            assert {r.name for r in shared.regions} <= await _registered(
                client, own_triton.admin_key
            )
            await shared.close({own_triton.grpc_url: client})

    asyncio.run(restarted())
