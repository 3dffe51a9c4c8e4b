"""The three models through Triton's asyncio gRPC client: client-side preparation, the call, and
the answer as typed results (`gateway.results`). One client per Triton replica
(`gateway.triton.replicas`); an analysis's models run concurrently on one replica."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc.aio as grpcclient
from starlette.concurrency import run_in_threadpool
from tritonclient.grpc.aio import InferenceServerClient as Client
from tritonclient.utils import InferenceServerException

from core.models import COCO_NAMES
from core.preprocessing import (
    RESNET50_INPUT_SIZE,
    YOLOV3_INPUT_SIZE,
    letterbox,
    resize_for_resnet50,
)
from gateway import metrics, tracing
from gateway.errors import InferenceTimeout, ModelUnavailable, PicmetricError, UpstreamError
from gateway.images.decode import DecodedImage
from gateway.results import Box, DetectedObject, Detection, Face, Label, Options
from gateway.triton.shared_memory import SharedInputs

log = logging.getLogger(__name__)

Prepared = dict[str, Any]

READY_POLL_S = 0.25  # how often a retry asks whether a Triton is ready again


@dataclass(frozen=True)
class Call:
    """What every Triton call needs: the client of the replica it goes to, the deadline, and the
    model repository (for label files that Triton does not apply itself)."""

    client: Client
    timeout: float
    repository: Path
    input_sizes: Mapping[str, int] = field(default_factory=dict)  # square inputs, from Triton
    # Told (Triton model, Triton's message) when a call finds a model's Python stub dead.
    on_dead_stub: Callable[[str, str], None] | None = None
    # A call that finds Triton going away waits this long at most (within `timeout`) for the
    # model to be ready again, on this Triton or another, and is retried once; 0: no retry.
    retry_wait: float = 0.0
    # Told after each call whether its Triton answered at all (False: UNAVAILABLE, e.g. refused).
    on_reached: Callable[[bool], None] | None = None
    # The Call a retry after "going away" uses (another replica's); None: this one again.
    failover: Callable[[], Call] | None = None
    address: str = ""  # the replica's, for the call's span
    # Sent with the call as gRPC metadata: the trace context (gateway.tracing.headers), or None.
    headers: Mapping[str, str] | None = None
    # The process's shared-memory regions when this replica's large inputs may go through them
    # (gateway/triton/shared_memory.py), and the inputs one attempt has put there, by name.
    shared: SharedInputs | None = None
    leased: Mapping[str, grpcclient.InferInput] = field(default_factory=dict)

    def input(self, name: str, array: np.ndarray, datatype: str) -> grpcclient.InferInput:
        """The input as this call sends it: in a shared-memory region, or inside the request."""
        return self.leased.get(name) or _input(name, array, datatype)


@dataclass(frozen=True)
class ModelSpec:
    """A model the gateway offers: how to prepare its tensors, how to call it, which Triton model
    it calls, and which Triton model's `1/provenance.json` describes its weights."""

    name: str
    triton_model: str
    provenance_model: str
    prepare: Callable[[DecodedImage, int | None], Prepared]  # (image, the input size Triton says)
    infer: Callable[[Call, Prepared, Options, int], Awaitable[Sequence[Detection]]]
    input_size: int | None  # the square side it resizes to by default; None: every pixel


# Copies of a model's input the gateway holds while its request is in flight: the prepared array,
# tritonclient's bytes of it (InferInput), the request message, the message serialized and gRPC's
# own copy of that (the first four measured with tests/utils/stage_memory.py: 4.0 times the
# photo for mtcnn, whose prepared array is the photo itself).
TENSOR_COPIES = 5
# A full-resolution input sent through a shared-memory region instead: the prepared array and
# the region's copy (measured the same way, `shared` stage: 1.0 times the photo beyond it).
SHARED_TENSOR_COPIES = 2


def input_memory(
    specs: list[ModelSpec], input_sizes: Mapping[str, int], shared: bool = False
) -> tuple[int, int]:
    """Peak bytes every model's input holds at once while the requests are in flight, as (bytes,
    bytes per decoded pixel): a square input of the size Triton says, or every pixel (through a
    shared-memory region when `shared`). Known before the decode, so that the analysis sizes its
    memory reservation without coming back."""
    fixed = per_pixel = 0
    for spec in specs:
        size = input_sizes.get(spec.name, spec.input_size)
        if size is None:
            per_pixel += 3 * (SHARED_TENSOR_COPIES if shared else TENSOR_COPIES)
        else:
            fixed += size * size * 3 * TENSOR_COPIES
    return fixed, per_pixel


def tensor_memory(
    specs: list[ModelSpec],
    input_sizes: Mapping[str, int],
    height: int,
    width: int,
    shared: bool = False,
) -> int:
    """`input_memory` for a photo decoded at `height` x `width`."""
    fixed, per_pixel = input_memory(specs, input_sizes, shared)
    return fixed + per_pixel * height * width


def decode_side(specs: list[ModelSpec], call: Call) -> int | None:
    """The shortest image side these models need from the decoder (the largest input size);
    None when one of them needs full resolution."""
    sizes = [call.input_sizes.get(spec.name, spec.input_size) for spec in specs]
    return None if None in sizes else max(s for s in sizes if s is not None)


# Triton's Python backend, when a model instance's stub process has died: "Stub process
# 'resnet50_0_0' is not healthy." (also inside an ensemble's or a BLS model's message). The
# instance is named <Triton model>_<group>_<index>. Triton keeps the model READY (server issue
# #7230) and does not restart the stub (#7347): only reloading the model repairs it.
_DEAD_STUB = re.compile(r"Stub process '(?P<instance>[^']+)' is not healthy")
# Triton's words for a model it does not serve right now (unloaded, being loaded, unknown), also
# when an ensemble or a BLS model reports them for one of its steps.
_NOT_SERVED = (
    "is not found",
    "has no available versions",
    "is not ready",
    "server not ready",
    "unavailable",
)
# A Triton going away (SIGTERM) stops every model's scheduler, waits for in-flight requests,
# unloads the models and only then closes its ports. Meanwhile tritonserver 2.51 answers a new
# request NOT_FOUND "Request for unknown model: '<model>' has no available versions" or
# UNAVAILABLE "Server is stopping, scheduler for model has stopped accepting new inference
# requests", and an ensemble or BLS request already running fails the same way when its next
# step is refused (the `mtcnn` BLS model's step: "mtcnn_rnet - Error when running inference:
# Server not ready"); once it has exited, UNAVAILABLE "failed to connect to all addresses"
# (README, "Shutdown and scale events").
_GOING_AWAY = ("has no available versions", "server is stopping", "server not ready")


def dead_stub_model(message: str) -> str | None:
    """The Triton model whose Python stub died, named in Triton's error message; None when the
    message is not about a dead stub."""
    match = _DEAD_STUB.search(message)
    if match is None:
        return None
    return re.sub(r"_\d+_\d+$", "", match["instance"])


def going_away(exc: InferenceServerException) -> bool:
    """Whether Triton's answer is one a Triton that is stopping (or gone) gives, which another
    Triton, or this one restarted, may serve."""
    message = _message(exc).lower()
    return "UNAVAILABLE" in str(exc.status() or "") or any(w in message for w in _GOING_AWAY)


def _message(exc: InferenceServerException) -> str:
    """Triton's message, without its closing full stop (ours follow it)."""
    return str(exc.message() or exc).rstrip(".")


def _map_triton_error(model: str, exc: InferenceServerException) -> PicmetricError:
    """Triton's error as ours: 504 when it did not answer in time, 503 (retry shortly) when Triton
    is unreachable or does not serve the model right now, 502 for any other failure it reports."""
    status, message = str(exc.status() or ""), _message(exc)
    if "DEADLINE_EXCEEDED" in status:
        return InferenceTimeout(f"{model}: Triton did not answer in time.")
    if "UNAVAILABLE" in status:
        return ModelUnavailable(f"{model}: Triton is not reachable ({message}); try again shortly.")
    if dead_stub_model(message):
        return ModelUnavailable(
            f"{model}: the model's process in Triton has died ({message}); the gateway is "
            "reloading it, try again shortly."
        )
    if "NOT_FOUND" in status or any(words in message.lower() for words in _NOT_SERVED):
        return ModelUnavailable(
            f"{model}: Triton does not serve the model right now ({message}); try again shortly."
        )
    return UpstreamError(f"{model}: Triton failed: {message}")


def _input(name: str, array: np.ndarray, datatype: str) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def prepare_resnet50(image: DecodedImage, size: int | None) -> Prepared:
    return {"image": resize_for_resnet50(image.rgb, size or RESNET50_INPUT_SIZE)[None]}


async def infer_resnet50(
    call: Call, prepared: Prepared, options: Options, priority: int = 0
) -> list[Label]:
    """Top labels by Triton's classification extension, above the threshold."""
    inputs = [_input("image", prepared["image"], "UINT8")]
    outputs = [grpcclient.InferRequestedOutput("probabilities", class_count=options.max_results)]
    result = await call.client.infer(
        "resnet50",
        inputs,
        outputs=outputs,
        priority=priority,
        client_timeout=call.timeout,
        headers=call.headers,
    )
    labels = []
    for entry in result.as_numpy("probabilities").reshape(-1):
        score, _, label = entry.decode().split(":", 2)
        if float(score) >= options.threshold:
            labels.append(Label(label=label, confidence=float(score)))
    return labels


def prepare_mtcnn(image: DecodedImage, size: int | None) -> Prepared:
    if not image.full_resolution:
        raise ValueError("mtcnn needs the image at full resolution (see decode_side).")
    return {"image": np.ascontiguousarray(image.rgb)}


async def infer_mtcnn(
    call: Call, prepared: Prepared, options: Options, priority: int = 0
) -> list[Face]:
    """Faces above the threshold, with boxes and landmarks in original pixels. (The cascade's
    own calls to its networks go at their default priority: model_repository/README.md.)"""
    inputs = [call.input("image", prepared["image"], "UINT8")]
    result = await call.client.infer(
        "mtcnn",
        inputs,
        # The smallest face, in pixels for this photo (face_size.for_photo); else config.pbtxt's.
        parameters=None if options.min_face_px is None else {"min_face_size": options.min_face_px},
        priority=priority,
        client_timeout=call.timeout,
        headers=call.headers,
    )
    boxes, scores = result.as_numpy("boxes"), result.as_numpy("scores")
    landmarks = result.as_numpy("landmarks")
    return [
        Face.of(score, box, points)
        for box, score, points in zip(boxes, scores, landmarks, strict=True)
        if score >= options.threshold
    ]


@functools.lru_cache(maxsize=4)
def coco_names(repository: Path) -> tuple[str, ...]:
    """The `yolov3` class names, one per line, in the model repository."""
    return tuple((repository / COCO_NAMES).read_text().splitlines())


def prepare_yolov3(image: DecodedImage, size: int | None) -> Prepared:
    """Letterboxed to the size the served model was converted for (`--size`), 416 by default;
    boxes come back in the photo's pixels, also from a reduced decode."""
    boxed, geometry = letterbox(image.rgb, size or YOLOV3_INPUT_SIZE, (image.height, image.width))
    shape = np.array([[geometry.height, geometry.width]], np.int32)
    return {"image": boxed[None], "image_shape": shape}


async def infer_yolov3(
    call: Call, prepared: Prepared, options: Options, priority: int = 0
) -> list[DetectedObject]:
    """Located COCO objects above the threshold, boxes in original pixels."""
    inputs = [
        _input("image", prepared["image"], "UINT8"),
        _input("image_shape", prepared["image_shape"], "INT32"),
    ]
    result = await call.client.infer(
        "yolov3",
        inputs,
        parameters={"score_threshold": options.threshold},
        priority=priority,
        client_timeout=call.timeout,
        headers=call.headers,
    )
    names = coco_names(call.repository)
    boxes = result.as_numpy("boxes").reshape(-1, 4)
    scores, classes = result.as_numpy("scores").reshape(-1), result.as_numpy("classes").reshape(-1)
    return [
        DetectedObject(label=names[int(c)], confidence=float(s), box=Box.of(box))
        for box, s, c in zip(boxes, scores, classes, strict=True)
        if s >= options.threshold and c >= 0  # -1 pads multi-image requests
    ]


MODELS: dict[str, ModelSpec] = {
    "resnet50": ModelSpec(
        "resnet50", "resnet50", "resnet50", prepare_resnet50, infer_resnet50, RESNET50_INPUT_SIZE
    ),
    "yolov3": ModelSpec(
        "yolov3", "yolov3", "yolov3_backbone", prepare_yolov3, infer_yolov3, YOLOV3_INPUT_SIZE
    ),
    "mtcnn": ModelSpec("mtcnn", "mtcnn", "mtcnn_pnet", prepare_mtcnn, infer_mtcnn, None),
}


@dataclass(frozen=True)
class ModelResult:
    detections: Sequence[Detection]
    seconds: float


def _mapped(spec: ModelSpec, call: Call, exc: InferenceServerException) -> PicmetricError:
    """Triton's error as ours; a dead Python stub is reported for repair first."""
    dead = dead_stub_model(_message(exc))
    if dead is not None and call.on_dead_stub is not None:
        call.on_dead_stub(dead, _message(exc))
    return _map_triton_error(spec.name, exc)


async def _model_ready(call: Call, model: str, seconds: float) -> bool:
    """Whether Triton says `model` is ready within `seconds`, asking every READY_POLL_S. The
    channel reconnects meanwhile: to another Triton behind the address, or this one restarted."""
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        try:
            if await call.client.is_model_ready(model, client_timeout=max(remaining, 0.1)):
                return True
        except InferenceServerException:
            pass  # not reachable yet
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(READY_POLL_S, remaining))


def _shared_memory_lost(exc: InferenceServerException) -> bool:
    """Triton's answer to a request naming a region it does not have registered (restarted)."""
    return "shared memory" in _message(exc).lower()


@asynccontextmanager
async def _leased(
    spec: ModelSpec, call: Call, prepared: Prepared
) -> AsyncIterator[dict[str, grpcclient.InferInput]]:
    """A full-resolution model's inputs put in shared-memory regions for one attempt, when the
    call's replica takes them; empty otherwise (everything goes inside the request)."""
    leased: dict[str, grpcclient.InferInput] = {}
    async with AsyncExitStack() as stack:
        if call.shared is not None and spec.input_size is None:
            for name, array in prepared.items():
                if array.dtype != np.uint8:
                    continue
                lease = call.shared.lease(call.client, call.address, name, array, "UINT8")
                tensor = await stack.enter_async_context(lease)
                if tensor is not None:
                    leased[name] = tensor
        yield leased


async def _attempt(
    spec: ModelSpec, call: Call, prepared: Prepared, options: Options, priority: int
) -> Sequence[Detection]:
    """One call of the model, its replica told whether Triton answered; a span of the trace
    (CLIENT: Triton's own spans hang under it) when the analysis is traced. A call whose input
    went through shared memory that Triton no longer has (it restarted) is sent again at once,
    the regions registered anew (or, failing that, the input inside the request)."""
    attributes = {"picmetric.model": spec.name, "server.address": call.address}
    name = f"triton {spec.triton_model}"
    try:
        for again in (True, False):
            async with _leased(spec, call, prepared) as leased:
                try:
                    with tracing.span(name, attributes, client=True):
                        sent = dataclasses.replace(call, headers=tracing.headers(), leased=leased)
                        detections = await spec.infer(sent, prepared, options, priority)
                    break
                except InferenceServerException as exc:
                    if not leased or call.shared is None:
                        raise
                    call.shared.forget(call.address)  # registered again by the next attempt
                    if not (again and _shared_memory_lost(exc)):
                        raise
                    log.warning(
                        "%s: Triton %s no longer has the gateway's shared memory (%s); "
                        "registering it again",
                        spec.name,
                        call.address,
                        _message(exc),
                    )
    except InferenceServerException as exc:
        if call.on_reached is not None:
            call.on_reached("UNAVAILABLE" not in str(exc.status() or ""))
        raise
    if call.on_reached is not None:
        call.on_reached(True)
    return detections


async def _infer(
    spec: ModelSpec, call: Call, prepared: Prepared, options: Options, priority: int
) -> ModelResult:
    """One model's call. When Triton answers that it is going away, the call waits (bounded by
    `call.retry_wait` and its own deadline) until the model is ready again, on another replica
    when there is one (`call.failover`), and is retried once there; a retry is logged and counted
    in picmetric_triton_retries_total."""
    started = time.perf_counter()
    deadline = time.monotonic() + call.timeout
    try:
        detections = await _attempt(spec, call, prepared, options, priority)
    except InferenceServerException as exc:
        if call.retry_wait <= 0 or not going_away(exc):
            raise _mapped(spec, call, exc) from exc
        first = exc
    else:
        return ModelResult(detections, time.perf_counter() - started)

    wait = max(0.0, min(call.retry_wait, deadline - time.monotonic()))
    log.warning("%s: Triton is going away (%s); retrying once", spec.name, _message(first))
    other = call.failover() if call.failover is not None else call
    if not await _model_ready(other, spec.triton_model, wait):
        metrics.TRITON_RETRIES.labels(spec.name, "no_ready_triton").inc()
        log.warning("%s: no Triton was ready within %.1f s; not retried", spec.name, wait)
        raise _mapped(spec, call, first) from first
    retry = dataclasses.replace(other, timeout=max(deadline - time.monotonic(), READY_POLL_S))
    try:
        detections = await _attempt(spec, retry, prepared, options, priority)
    except InferenceServerException as exc:
        metrics.TRITON_RETRIES.labels(spec.name, "failed").inc()
        log.warning("%s: the retry failed too (%s)", spec.name, _message(exc))
        raise _mapped(spec, retry, exc) from exc
    metrics.TRITON_RETRIES.labels(spec.name, "served").inc()
    log.info("%s: the retry was served", spec.name)
    return ModelResult(detections, time.perf_counter() - started)


async def run_models(
    specs: list[ModelSpec], call: Call, image: DecodedImage, options: Options, priority: int = 0
) -> tuple[dict[str, ModelResult], float]:
    """Prepare every model's tensors, then run the models concurrently, at Triton's request
    `priority` (0: the model's default, 1, an interactive request's; 2: a bulk job's, queued in
    Triton behind every interactive one: model_repository/README.md). Returns the results by
    model name and the preparation time in seconds."""
    started = time.perf_counter()
    with tracing.span("preprocess"):
        prepared = await run_in_threadpool(
            lambda: [spec.prepare(image, call.input_sizes.get(spec.name)) for spec in specs]
        )
    preprocess = time.perf_counter() - started
    results = await asyncio.gather(
        *(_infer(s, call, p, options, priority) for s, p in zip(specs, prepared, strict=True))
    )
    return {spec.name: result for spec, result in zip(specs, results, strict=True)}, preprocess
