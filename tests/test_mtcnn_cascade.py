"""The MTCNN cascade's pure functions (model_repository/mtcnn/1/cascade.py), without Triton:
by hand, against TensorFlow and the mtcnn package's own helpers, and the whole cascade run on
the exported networks with ONNX Runtime against `MTCNN().detect_faces()`."""

from __future__ import annotations

import asyncio
import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest

from core.model_config import read_config
from core.paths import MODEL_REPOSITORY
from tests.utils.mtcnn_faces import assert_same_faces, cascade, collage, oracle, photos

mc = cascade()


def _config_parameters(model: str) -> dict[str, str]:
    config = read_config(MODEL_REPOSITORY / model)
    return {key: value.string_value for key, value in config.parameters.items()}


def _max_batch_size(model: str) -> int:
    return int(read_config(MODEL_REPOSITORY / model).max_batch_size)


CROP_BATCH = int(_config_parameters("mtcnn")["crop_batch_size"])
# Every PNet output cell a proposal, and no box suppressed or dropped at any stage.
NOTHING_FILTERED = {
    **dict.fromkeys(("threshold_pnet", "threshold_rnet", "threshold_onet"), 0),
    **dict.fromkeys(("nms_pnet1", "nms_pnet2", "nms_rnet", "nms_onet"), 1),
}


# --- parameters and configuration ------------------------------------------------------------


def test_parameters_update_accepts_numbers_and_numeric_strings() -> None:
    params = mc.Parameters().update({"min_face_size": "40", "threshold_onet": 0.9})
    assert params.min_face_size == 40.0 and params.threshold_onet == 0.9
    assert params.scale_factor == mc.Parameters().scale_factor


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"min_face": 40}, "Unknown parameter 'min_face'"),
        ({"scale_factor": 1.0}, "scale_factor must be > 0 and at most 0.9"),
        ({"scale_factor": 0.999}, "scale_factor must be > 0 and at most 0.9"),
        ({"scale_factor": 0}, "scale_factor must be > 0 and at most 0.9"),
        ({"min_face_size": 0}, "min_face_size must be > 0"),
        ({"threshold_pnet": 1.5}, "threshold_pnet must be between 0 and 1"),
        ({"threshold_rnet": "high"}, "'threshold_rnet' must be a number"),
        ({"min_face_size": "nan"}, "must be a finite number"),
        ({"nms_onet": True}, "must be a finite number"),
    ],
)
def test_parameters_update_rejects_nonsense_with_a_clear_message(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(mc.CascadeError, match=re.escape(message)):
        mc.Parameters().update(values)


def test_config_crop_batch_size_fits_rnet_and_onet_batches() -> None:
    assert 1 <= CROP_BATCH <= _max_batch_size("mtcnn_rnet")
    assert CROP_BATCH <= _max_batch_size("mtcnn_onet")


def test_config_defaults_equal_the_parameters_dataclass_defaults() -> None:
    """config.pbtxt is the server's one source of defaults; the dataclass's (for the pure
    functions and benchmarks) must agree with it."""
    configured = _config_parameters("mtcnn")
    configured.pop("crop_batch_size")
    assert mc.Parameters.from_config(configured) == mc.Parameters()


def test_parameters_from_config_requires_every_parameter() -> None:
    configured = _config_parameters("mtcnn")
    del configured["crop_batch_size"], configured["nms_onet"], configured["scale_factor"]
    with pytest.raises(
        mc.CascadeError, match=re.escape("['nms_onet', 'scale_factor'] are missing")
    ):
        mc.Parameters.from_config(configured)


@pytest.mark.slow
def test_config_defaults_are_the_mtcnn_package_defaults() -> None:
    """config.pbtxt's defaults equal the keyword defaults of the package's stages (the oracle)."""
    from mtcnn.stages import StageONet, StagePNet, StageRNet

    package = {}
    for stage in (StagePNet, StageRNet, StageONet):
        for name, p in inspect.signature(stage.__call__).parameters.items():
            if p.default is not inspect.Parameter.empty:
                package[name] = p.default
    configured = _config_parameters("mtcnn")
    configured.pop("crop_batch_size")
    assert package.pop("min_size") == mc.PNET_WINDOW
    assert {k: float(v) for k, v in configured.items()} == package
    assert mc.Parameters().update(configured) == mc.Parameters()


# --- pyramid ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("size", [(12, 12), (13, 40), (300, 451), (512, 512), (3000, 4000)])
def test_pyramid_scales_match_the_package(size: tuple[int, int]) -> None:
    from mtcnn.utils.images import build_scale_pyramid

    height, width = size
    want = build_scale_pyramid(width, height, min_face_size=20, scale_factor=0.709)
    assert mc.pyramid_scales(height, width, 20, 0.709) == list(want)


def test_pyramid_scales_empty_for_images_below_pnet_window() -> None:
    assert mc.pyramid_scales(11, 11, 20, 0.709) == []
    assert mc.pyramid_scales(1, 4000, 20, 0.709) == []
    assert mc.pyramid_scales(4000, 1, 20, 0.709) == []


def test_pyramid_scales_skip_levels_smaller_than_pnet_window() -> None:
    """min_face_size=60 makes the package's pyramid go below 12 px; those levels are dropped."""
    scales = mc.pyramid_scales(512, 512, 60, 0.709)
    assert scales and scales[0] == pytest.approx(12 / 60)
    assert all(min(mc.level_size(512, 512, s)) >= mc.PNET_WINDOW for s in scales)


def test_pyramid_refuses_a_level_over_the_pixel_budget() -> None:
    image = np.zeros((3000, 4000, 3), np.float32)
    with pytest.raises(mc.CascadeError, match="raise min_face_size"):
        mc.pyramid(image, [12 / 2])


def test_check_budget_counts_the_pixels_of_all_levels() -> None:
    """min_face_size 12 on 4000x3000 passes at the default scale_factor (24 megapixels over 15
    levels); at scale_factor 0.9 the first level is as big, but there are 51 (63 megapixels)."""
    mc.check_budget(3000, 4000, mc.pyramid_scales(3000, 4000, 12, 0.709))
    scales = mc.pyramid_scales(3000, 4000, 12, mc.MAX_SCALE_FACTOR)
    assert len(scales) == 51
    with pytest.raises(mc.CascadeError, match="in 51 levels .* lower scale_factor"):
        mc.check_budget(3000, 4000, scales)


def test_pyramid_levels_stay_few_at_the_largest_scale_factor() -> None:
    """The budgets allow at most a 5657-px short side at scale 1, so about 60 levels."""
    side = math.isqrt(mc.MAX_PYRAMID_PIXELS)
    assert len(mc.pyramid_scales(side, side, mc.PNET_WINDOW, mc.MAX_SCALE_FACTOR)) <= 60
    assert len(mc.pyramid_scales(100_000, 100_000, 20, mc.MAX_SCALE_FACTOR)) <= 100


def test_detect_faces_refuses_a_huge_image_before_converting_it() -> None:
    """A 60-megapixel image (a broadcast view: no memory behind it) with a large min_face_size
    (a small pyramid) is refused on its size, before any pixel is converted to float."""

    async def no_network(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        raise AssertionError("no network call expected")

    image = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (10_000, 6_000, 3))
    params = mc.Parameters(min_face_size=400)
    with pytest.raises(mc.CascadeError, match="6000x10000 pixels, more than 50,000,000"):
        asyncio.run(mc.detect_faces(image, params, no_network, CROP_BATCH))


@pytest.mark.slow
@pytest.mark.parametrize("size", [(71, 54), (12, 12), (50, 76), (13, 9), (100, 77), (3, 70)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_area_level_matches_tensorflow(size: tuple[int, int], dtype: type) -> None:
    import tensorflow as tf

    image = np.random.default_rng(0).uniform(0, 255, (100, 77, 3)).astype(dtype)
    want = tf.image.resize(image[None], size, method="area").numpy()[0]
    level = mc.area_level(*mc.image_rows(image), *size)
    assert level.shape == (3, *size) and level.dtype == np.float32
    np.testing.assert_allclose(level.transpose(1, 2, 0), want, atol=1e-3)


@pytest.mark.slow
def test_pyramid_of_a_12_megapixel_photo_matches_tensorflow() -> None:
    """Every level of a 4032x3024 photo's pyramid (running sums in int32 reach 771,120 down a
    column: still exact) within 1e-3 of TensorFlow's area resize, in bands of rows."""
    import tensorflow as tf

    image = np.random.default_rng(1).integers(0, 256, (3024, 4032, 3), dtype=np.uint8)
    scales = mc.pyramid_scales(3024, 4032, 20, 0.709)
    levels = mc.pyramid(image, scales)
    assert len(levels) == len(scales) == 15
    for scale, level in zip(scales[::4], levels[::4], strict=True):
        size = mc.level_size(3024, 4032, scale)
        want = tf.image.resize(image[None], size, method="area").numpy()[0]
        np.testing.assert_allclose(level.transpose(1, 2, 0), want, atol=1e-3, err_msg=f"{scale}")


@pytest.mark.parametrize("height", [12, 13, 400, 401, 411, 1814])
def test_pnet_bands_cover_the_level_on_even_rows_with_the_window_overlap(height: int) -> None:
    width = 2419
    bands = mc.pnet_bands(height, width)
    assert bands[0][0] == 0 and bands[-1][1] == height
    for (start, stop), (next_start, _) in zip(bands, bands[1:], strict=False):
        assert start % 2 == 0 and (stop - start) % 2 == 0
        assert stop - next_start == mc.PNET_WINDOW - mc.PNET_STRIDE
        assert (stop - start) * width <= mc.PNET_BAND_PIXELS
    if height == 1814:
        assert len(bands) == 5  # 412 rows of 2419 pixels each but the last


# --- boxes -----------------------------------------------------------------------------------


def test_pnet_proposals_window_regression_and_scale() -> None:
    """A face cell at (row 3, column 5) is the window [2x + 1, 2x + 12] at the level's scale."""
    probabilities = np.zeros((2, 6, 8), np.float32)
    probabilities[:, 3, 5] = (0.1, 0.9)
    probabilities[:, 1, 1] = (0.5, 0.5)  # below the threshold
    offsets = np.zeros((4, 6, 8), np.float32)
    offsets[:, 3, 5] = (0.1, 0.0, -0.1, 0.0)
    boxes = mc.pnet_proposals(offsets, probabilities, scale=0.5, threshold=0.6)
    x1, y1, x2, y2 = 11 + 1.1, 7, 22 - 1.1, 18
    np.testing.assert_allclose(boxes, [[x1 / 0.5, y1 / 0.5, x2 / 0.5, y2 / 0.5, 0.9]], rtol=1e-6)


def test_pnet_proposals_keep_the_best_top_k() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0, 1, (2, 20, 30)).astype(np.float32)
    offsets = rng.uniform(-0.2, 0.2, (4, 20, 30)).astype(np.float32)
    every = mc.pnet_proposals(offsets, probabilities, 0.5, threshold=0.0, top_k=600)
    best = mc.pnet_proposals(offsets, probabilities, 0.5, threshold=0.0, top_k=50)
    assert len(every) == 600 and len(best) == 50
    np.testing.assert_array_equal(best, every[:50])
    assert np.all(np.diff(best[:, 4]) <= 0)


def test_pnet_stage_keeps_the_best_across_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without thresholds or NMS, PNet's whole output (400 cells) would be candidates; the
    cross-level cap keeps the best PNET_TOP_K, then NMS runs on those only."""
    rng = np.random.default_rng(0)
    outputs = [
        {
            "offsets": np.zeros((1, 4, 10, 10), np.float32),
            "probabilities": rng.uniform(0, 1, (1, 2, 10, 10)).astype(np.float32),
        }
        for _ in range(4)
    ]
    params = mc.Parameters().update(NOTHING_FILTERED)
    scales = [1.0, 0.7, 0.5, 0.35]
    assert len(mc.pnet_stage(outputs, scales, params)) == 400
    monkeypatch.setattr(mc, "PNET_TOP_K", 30)
    capped = mc.pnet_stage(outputs, scales, params)
    scores = np.concatenate([o["probabilities"][0, 1].ravel() for o in outputs])
    np.testing.assert_allclose(capped[:, 4], np.sort(scores)[::-1][:30])


def test_pnet_proposals_none_above_threshold() -> None:
    boxes = mc.pnet_proposals(np.zeros((4, 2, 2)), np.zeros((2, 2, 2)), 1.0, 0.6)
    assert boxes.shape == (0, 5)


def test_suppress_drops_boxes_overlapping_any_better_box_even_a_dropped_one() -> None:
    """The package's NMS: B overlaps A, C overlaps B only; greedy NMS would keep C, it does not."""
    a = [0, 0, 10, 10, 0.9]
    b = [3, 0, 13, 10, 0.8]
    c = [6, 0, 16, 10, 0.7]
    far = [50, 50, 60, 60, 0.6]
    kept = mc.suppress(np.array([c, far, a, b], float), threshold=0.3)
    np.testing.assert_array_equal(kept, [a, far])


def test_suppress_min_method_divides_by_the_smaller_box() -> None:
    big = [0, 0, 10, 10, 0.9]
    inner = [0, 0, 5, 5, 0.8]  # IoU 0.25, overlap over the smaller box 1.0
    assert len(mc.suppress(np.array([big, inner], float), 0.7, method="union")) == 2
    assert len(mc.suppress(np.array([big, inner], float), 0.7, method="min")) == 1


@pytest.mark.slow
def test_suppress_matches_the_package_nms_also_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from mtcnn.utils.bboxes import smart_nms_from_bboxes

    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 200, (300, 2))
    wh = rng.uniform(5, 60, (300, 2))
    boxes = np.concatenate([xy, xy + wh, rng.uniform(0, 1, (300, 1))], axis=1)
    for method in ("union", "min"):
        with_id = np.concatenate([np.zeros((300, 1)), boxes], axis=1)
        want = smart_nms_from_bboxes(with_id, threshold=0.5, method=method)[:, 1:]
        np.testing.assert_array_equal(mc.suppress(boxes, 0.5, method), want)
        monkeypatch.setattr(cascade("boxes"), "NMS_CHUNK", 7)
        np.testing.assert_array_equal(mc.suppress(boxes, 0.5, method), want)
        monkeypatch.undo()


def test_square_keeps_the_centre_and_takes_the_longer_side() -> None:
    squared = mc.square(np.array([[10.0, 20.0, 30.0, 60.0, 0.5]]))
    np.testing.assert_allclose(squared, [[0.0, 20.0, 40.0, 60.0, 0.5]])


def test_regress_scales_offsets_by_box_size_plus_one() -> None:
    boxes = np.array([[10.0, 10.0, 19.0, 29.0, 0.9]])
    moved = mc.regress(boxes, np.array([[0.1, -0.1, 0.2, 0.0]]))
    np.testing.assert_allclose(moved, [[11.0, 8.0, 21.0, 29.0, 0.9]])


def test_place_landmarks_from_box_fractions() -> None:
    boxes = np.array([[10.0, 20.0, 19.0, 39.0, 1.0]])  # 10 x 20 with the +1
    fractions = np.array([[0.0, 0.5, 1.0, 0.2, 0.8, 0.0, 0.25, 0.5, 0.75, 1.0]])
    points = mc.place_landmarks(fractions, boxes)
    want = [[9, 19], [14, 24], [19, 29], [11, 34], [17, 39]]
    np.testing.assert_allclose(points, [want])


def test_clip_boxes_to_the_image() -> None:
    clipped = mc.clip_boxes(np.array([[-5.0, -1.0, 120.0, 50.0]]), height=40, width=100)
    np.testing.assert_allclose(clipped, [[0.0, 0.0, 99.0, 39.0]])


@pytest.mark.slow
def test_crop_and_resize_matches_tensorflow_with_outside_pixels_normalising_to_zero() -> None:
    import tensorflow as tf

    image = np.random.default_rng(0).uniform(0, 255, (101, 77, 3)).astype(np.float32)
    boxes = np.array([[10.3, -5.2, 40.7, 30.1], [60, 80, 90, 120.5], [-10, -10, 200, 200]])
    normalised = (boxes[:, [1, 0, 3, 2]] / [101, 77, 101, 77]).astype(np.float32)
    for size in (mc.RNET_SIZE, mc.ONET_SIZE):
        want = tf.image.crop_and_resize(
            (image[None] - 127.5) / 128, normalised, np.zeros(3, np.int32), (size, size)
        ).numpy()
        got = (mc.crop_and_resize(image, boxes, size).transpose(0, 2, 3, 1) - 127.5) / 128
        np.testing.assert_allclose(got, want, atol=1e-5)


# --- the whole cascade on ONNX Runtime -------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_infer(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """An `infer` coroutine running the exported networks in-process, recording each call."""
    import onnxruntime as ort

    from conversion import mtcnn as converter

    repository: Path = tmp_path_factory.mktemp("mtcnn_models")
    converter.convert(repository)
    sessions = {
        n.model: ort.InferenceSession(
            str(repository / n.model / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        for n in converter.NETWORKS
    }
    calls: list[tuple[str, int]] = []

    async def infer(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        calls.append((model, len(inputs["image"])))
        return dict(zip(outputs, sessions[model].run(outputs, inputs), strict=True))

    infer.calls = calls  # type: ignore[attr-defined]
    return infer


@pytest.fixture(scope="module")
def detector():  # type: ignore[no-untyped-def]
    from mtcnn import MTCNN

    return MTCNN()


@pytest.mark.slow
def test_detect_faces_on_onnxruntime_matches_the_mtcnn_package(onnx_infer, detector) -> None:  # type: ignore[no-untyped-def]
    """Oracle: MTCNN().detect_faces(), same parameters; IoU > 0.95, score +-0.01, 2 px."""
    images = {**photos(), "collage": collage()}
    for name, image in images.items():
        got = asyncio.run(mc.detect_faces(image, mc.Parameters(), onnx_infer, CROP_BATCH))
        assert_same_faces(got, oracle(detector, image), name)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(400, 300), (401, 299), (131, 90)])
def test_pnet_in_bands_gives_the_whole_levels_output(onnx_infer, monkeypatch, shape) -> None:  # type: ignore[no-untyped-def]
    """PNet's output over bands of rows, stacked, equals its output over the whole level."""
    monkeypatch.setattr(cascade("pyramid"), "PNET_BAND_PIXELS", 30 * shape[1])
    level = np.random.default_rng(0).uniform(0, 255, (1, 3, *shape)).astype(np.float32)
    outputs = ["offsets", "probabilities"]
    whole = asyncio.run(onnx_infer("mtcnn_pnet", {"image": level}, outputs))
    bands = mc.pnet_bands(*shape)
    assert len(bands) > 3
    parts = [
        asyncio.run(onnx_infer("mtcnn_pnet", {"image": level[:, :, a:b]}, outputs))
        for a, b in bands
    ]
    for name in outputs:
        stacked = np.concatenate([part[name] for part in parts], axis=2)
        assert stacked.shape == whole[name].shape
        np.testing.assert_allclose(stacked, whole[name], atol=1e-5)


@pytest.mark.slow
def test_detect_faces_calls_pnet_per_level_and_rnet_onet_in_crop_batches(onnx_infer) -> None:  # type: ignore[no-untyped-def]
    image = collage()
    params = mc.Parameters()
    onnx_infer.calls.clear()
    whole = asyncio.run(mc.detect_faces(image, params, onnx_infer, CROP_BATCH))
    calls = list(onnx_infer.calls)
    levels = len(mc.pyramid_scales(*image.shape[:2], params.min_face_size, params.scale_factor))
    assert [m for m, _ in calls].count("mtcnn_pnet") == levels
    rnet = [n for m, n in calls if m == "mtcnn_rnet"]
    onet = [n for m, n in calls if m == "mtcnn_onet"]
    assert len(rnet) == 1 and rnet[0] > 5
    assert len(onet) == 1 and onet[0] >= len(whole.scores) == 7
    onnx_infer.calls.clear()
    chunked = asyncio.run(mc.detect_faces(image, params, onnx_infer, crop_batch_size=5))
    rnet_chunks = [n for m, n in onnx_infer.calls if m == "mtcnn_rnet"]
    assert sum(rnet_chunks) == rnet[0] and max(rnet_chunks) <= 5
    assert len(rnet_chunks) == math.ceil(rnet[0] / 5)
    np.testing.assert_allclose(chunked.boxes, whole.boxes, atol=1e-3)


@pytest.mark.slow
def test_detect_faces_with_nothing_filtered_does_bounded_work(onnx_infer) -> None:  # type: ignore[no-untyped-def]
    """threshold_pnet=0 makes each of the collage's ~150k PNet cells a proposal, and no NMS or
    threshold drops any: RNet and ONet still see at most PNET_TOP_K crops."""
    onnx_infer.calls.clear()
    params = mc.Parameters().update(NOTHING_FILTERED)
    faces = asyncio.run(mc.detect_faces(collage(), params, onnx_infer, CROP_BATCH))
    rnet = sum(n for m, n in onnx_infer.calls if m == "mtcnn_rnet")
    onet = sum(n for m, n in onnx_infer.calls if m == "mtcnn_onet")
    assert rnet == onet == mc.PNET_TOP_K and len(faces.scores) <= mc.PNET_TOP_K


def test_detect_faces_on_tiny_images_needs_no_network() -> None:
    async def no_network(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        raise AssertionError("no network call expected")

    for shape in ((11, 11, 3), (1, 600, 3), (600, 1, 3), (0, 0, 3)):
        image = np.zeros(shape, np.uint8)
        faces = asyncio.run(mc.detect_faces(image, mc.Parameters(), no_network, CROP_BATCH))
        assert faces.boxes.shape == (0, 4) and faces.landmarks.shape == (0, 5, 2)


def test_detect_faces_rejects_images_that_are_not_rgb() -> None:
    async def no_network(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        raise AssertionError("no network call expected")

    with pytest.raises(mc.CascadeError, match="height x width x 3"):
        image = np.zeros((50, 50), np.uint8)
        asyncio.run(mc.detect_faces(image, mc.Parameters(), no_network, CROP_BATCH))
