"""Property: every stage of an analysis (decode with its orientation and colour conversion, quality
figures and perceptual hash, each model's input as sent, the drawing) works on every shape from
1x1 to the pixel limit at every aspect ratio (1xN and Nx1 included) within the memory the gateway
counts for it from the header (gateway.pipeline.analysis.analysis_memory), measured as a worker
process's peak RSS (tests/utils/stage_memory.py), and within a time that grows with the pixels only.
The examples use a pixel limit of 2 MP for speed; the explicit ones run at the default 40 MP limit.
On main the quality step of a 20000x2 photo alone would hold 3,840,000x384 px (gigabytes)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.images import drawing, quality
from gateway.images.decode import DEFAULT_MAX_IMAGE_SIDE, plan_decode
from gateway.pipeline.analysis import analysis_memory, decode_min_side
from gateway.settings import Settings
from gateway.triton.inference import MODELS, Call, tensor_memory
from tests.utils.phone_formats import display_p3, encode
from tests.utils.stage_memory import Measured, StageWorker

MB = 1_000_000
SMALL_LIMIT = 2_000_000  # the pixel limit of the drawn examples
LIMIT = Settings().max_image_pixels  # the default, 40 MP: the explicit examples
# What a page-granular RSS measure shows beyond the counted buffers: the libraries' small
# allocations (libjpeg's tables, littlecms's transform, numpy's and protobuf's bookkeeping).
SLACK = 3 * MB
MODEL_SETS = [["resnet50"], ["yolov3"], ["mtcnn"], ["resnet50", "yolov3", "mtcnn"]]
_CALL = Call(client=None, timeout=1.0, repository=None)  # type: ignore[arg-type]


def seconds_allowed(pixels: int) -> float:
    """Generous, and linear in the pixels: 1 s and 0.25 us a pixel (10 s at 40 MP; the 20000x2
    photo's quality step on main works on 1.5 billion)."""
    return 1.0 + pixels * 250e-9


@st.composite
def shapes(draw: st.DrawFn) -> tuple[int, int]:
    """(height, width) up to SMALL_LIMIT pixels and DEFAULT_MAX_IMAGE_SIDE a side, the pixel count
    and the aspect ratio each log-uniform, or a row or column of pixels."""
    kind = draw(st.sampled_from(["any", "row", "column"]))
    if kind != "any":
        length = draw(st.integers(1, min(SMALL_LIMIT, DEFAULT_MAX_IMAGE_SIDE)))
        return (1, length) if kind == "row" else (length, 1)
    pixels = math.exp(draw(st.floats(0, math.log(SMALL_LIMIT))))
    aspect = math.exp(draw(st.floats(-math.log(pixels), math.log(pixels))) if pixels > 1 else 0)
    height = min(max(1, round(math.sqrt(pixels * aspect))), DEFAULT_MAX_IMAGE_SIDE)
    width = min(max(1, int(pixels / height)), DEFAULT_MAX_IMAGE_SIDE)
    return height, width


def _photo(height: int, width: int) -> np.ndarray:
    """A smooth gradient with noise: compresses like a photo, so large examples encode fast."""
    rng = np.random.default_rng(height * 31 + width)
    rows = np.linspace(0, 200, height, dtype=np.float32)[:, None, None]
    columns = np.linspace(0, 50, width, dtype=np.float32)[None, :, None]
    noise = rng.integers(0, 6, (height, width, 1), np.uint8)
    return ((rows + columns) + noise).astype(np.uint8).repeat(3, axis=2)


@pytest.fixture(scope="module")
def worker() -> Iterator[StageWorker]:
    stages = StageWorker()
    yield stages
    stages.close()


def _within(what: str, measured: Measured, counted: int, pixels: int) -> None:
    assert measured.peak <= counted + SLACK, (
        f"{what}: held {measured.peak / MB:.1f} MB, counted {counted / MB:.1f} MB"
    )
    assert measured.seconds <= seconds_allowed(pixels), f"{what}: {measured.seconds:.2f} s"


@settings(
    max_examples=30,
    deadline=None,  # each stage's time is checked against seconds_allowed
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    shape=shapes(),
    format=st.sampled_from(["JPEG", "PNG"]),
    orientation=st.sampled_from([1, 6]),
    profiled=st.booleans(),
    models=st.sampled_from(MODEL_SETS),
    limit=st.just(SMALL_LIMIT),
)
@example((2, 20000), "JPEG", 1, False, ["resnet50"], LIMIT)  # the photo
@example((610, 65500), "PNG", 6, True, MODEL_SETS[3], LIMIT)
@example((6324, 6324), "JPEG", 1, True, MODEL_SETS[3], LIMIT)
@example((65500, 1), "PNG", 1, False, MODEL_SETS[3], LIMIT)
def test_every_stage_holds_what_is_counted_for_any_shape(
    worker: StageWorker,
    shape: tuple[int, int],
    format: str,
    orientation: int,
    profiled: bool,
    models: list[str],
    limit: int,
) -> None:
    height, width = shape
    upright = _photo(height, width)
    data = encode(upright, format, orientation, display_p3() if profiled else None, quality=90)
    specs = [MODELS[name] for name in models]
    min_side = decode_min_side(specs, _CALL)
    plan = plan_decode(data, limit, 64, min_side)
    pixels = height * width

    decoded = worker.measure("decode", (data, limit, min_side))
    _within("decode", decoded, plan.memory, pixels)
    size = plan.output_size
    _within("quality", worker.measure("quality", size), quality.memory(*size), pixels)
    tensors = worker.measure("tensors", (*size, models))
    _within("inputs", tensors, tensor_memory(specs, {}, *size), pixels)
    if "mtcnn" in models:  # decoded whole: the annotation's drawing too
        _within("draw", worker.measure("draw", size), drawing.memory(*size), pixels)
    # The whole analysis's count is bounded by the pixel limit, whatever the shape.
    assert analysis_memory(plan, specs, {}) <= 20 * limit + 24 * MB


@pytest.mark.parametrize("size", [(3024, 4032), (6324, 6324)])
@pytest.mark.parametrize("models", [["mtcnn"], MODEL_SETS[3]])
def test_inputs_through_shared_memory_hold_what_is_counted(
    worker: StageWorker, size: tuple[int, int], models: list[str]
) -> None:
    """mtcnn's photo in a shared-memory region (gateway/triton/shared_memory.py) instead of the
    gRPC request: the prepared array and the region's copy, within `tensor_memory(shared=True)`,
    and less than half of what the request's copies hold."""
    specs = [MODELS[name] for name in models]
    pixels = size[0] * size[1]
    shared = worker.measure("shared", (*size, models))
    counted = tensor_memory(specs, {}, *size, shared=True)
    _within("inputs in shared memory", shared, counted, pixels)
    assert shared.peak < worker.measure("tensors", (*size, models)).peak / 2
