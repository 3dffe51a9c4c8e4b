"""The MTCNN cascade (model_repository/mtcnn/1/cascade.py and parameters.py), without Triton:
its parameters and configuration, the PNet stage, and the whole cascade run on the exported
networks with ONNX Runtime against `MTCNN().detect_faces()`. The pyramid and the box maths have
their own test files."""

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
from tests.utils.real_photos import decoded, jpeg_bytes, real_photo

mtcnn_cascade = cascade("cascade")
mtcnn_parameters = cascade("parameters")
mtcnn_pyramid = cascade("pyramid")


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
    params = mtcnn_parameters.Parameters().update({"min_face_size": "40", "threshold_onet": 0.9})
    assert params.min_face_size == 40.0 and params.threshold_onet == 0.9
    assert params.scale_factor == mtcnn_parameters.Parameters().scale_factor


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
    with pytest.raises(mtcnn_parameters.CascadeError, match=re.escape(message)):
        mtcnn_parameters.Parameters().update(values)


def test_config_crop_batch_size_fits_rnet_and_onet_batches() -> None:
    assert 1 <= CROP_BATCH <= _max_batch_size("mtcnn_rnet")
    assert CROP_BATCH <= _max_batch_size("mtcnn_onet")


def test_config_defaults_equal_the_parameters_dataclass_defaults() -> None:
    """config.pbtxt is the server's one source of defaults; the dataclass's (for the pure
    functions and benchmarks) must agree with it."""
    configured = _config_parameters("mtcnn")
    for key in mtcnn_parameters.Deployment.KEYS:
        configured.pop(key)
    assert mtcnn_parameters.Parameters.from_config(configured) == mtcnn_parameters.Parameters()


def test_parameters_from_config_requires_every_parameter() -> None:
    configured = _config_parameters("mtcnn")
    del configured["crop_batch_size"], configured["pyramid"]
    del configured["nms_onet"], configured["scale_factor"]
    with pytest.raises(
        mtcnn_parameters.CascadeError, match=re.escape("['nms_onet', 'scale_factor'] are missing")
    ):
        mtcnn_parameters.Parameters.from_config(configured)


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
    for key in mtcnn_parameters.Deployment.KEYS:
        configured.pop(key)
    assert package.pop("min_size") == mtcnn_pyramid.PNET_WINDOW
    assert {k: float(v) for k, v in configured.items()} == package
    assert mtcnn_parameters.Parameters().update(configured) == mtcnn_parameters.Parameters()


def test_detect_faces_refuses_a_huge_image_before_converting_it() -> None:
    """A 60-megapixel image (a broadcast view: no memory behind it) with a large min_face_size
    (a small pyramid) is refused on its size, before any pixel is converted to float."""

    async def no_network(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        raise AssertionError("no network call expected")

    image = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (10_000, 6_000, 3))
    params = mtcnn_parameters.Parameters(min_face_size=400)
    with pytest.raises(
        mtcnn_parameters.CascadeError, match="6000x10000 pixels, more than 50,000,000"
    ):
        asyncio.run(mtcnn_cascade.detect_faces(image, params, no_network, CROP_BATCH))


# --- the PNet stage ----------------------------------------------------------------------------


def test_pnet_stage_keeps_the_best_across_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without thresholds or NMS, PNet's whole output (400 cells) would be candidates; the
    cross-level cap keeps the best PNET_TOP_K, then NMS runs on those only."""
    rng = np.random.default_rng(0)
    outputs = [
        [
            {
                "offsets": np.zeros((1, 4, 10, 10), np.float32),
                "probabilities": rng.uniform(0, 1, (1, 2, 10, 10)).astype(np.float32),
            }
        ]
        for _ in range(4)
    ]
    params = mtcnn_parameters.Parameters().update(NOTHING_FILTERED)
    scales = [1.0, 0.7, 0.5, 0.35]
    assert len(mtcnn_cascade.pnet_stage(outputs, scales, params)) == 400
    monkeypatch.setattr(mtcnn_cascade, "PNET_TOP_K", 30)
    capped = mtcnn_cascade.pnet_stage(outputs, scales, params)
    scores = np.concatenate([o[0]["probabilities"][0, 1].ravel() for o in outputs])
    np.testing.assert_allclose(capped[:, 4], np.sort(scores)[::-1][:30])


def test_deployment_pyramid_follows_the_instance_kind_unless_named() -> None:
    def in_graph(pyramid: str, kind: str) -> bool:
        values = {"crop_batch_size": "8", "pyramid": pyramid}
        return mtcnn_parameters.Deployment.from_config(values, kind).pyramid_in_graph

    assert [in_graph("auto", kind) for kind in ("GPU", "CPU", "MODEL")] == [True, False, False]
    assert in_graph("graph", "CPU") and not in_graph("numpy", "GPU")
    assert mtcnn_parameters.Deployment.from_config(
        {"crop_batch_size": "8", "pyramid": "auto"}, "CPU"
    ) == (mtcnn_parameters.Deployment(crop_batch_size=8, pyramid_in_graph=False))


def test_deployment_refuses_an_unknown_or_missing_pyramid() -> None:
    with pytest.raises(
        mtcnn_parameters.CascadeError, match=r"'pyramid' must be one of .*not 'gpu'"
    ):
        mtcnn_parameters.Deployment.from_config({"crop_batch_size": "8", "pyramid": "gpu"}, "GPU")
    with pytest.raises(mtcnn_parameters.CascadeError, match=re.escape("['pyramid'] are missing")):
        mtcnn_parameters.Deployment.from_config({"crop_batch_size": "8"}, "GPU")


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
        got = asyncio.run(
            mtcnn_cascade.detect_faces(image, mtcnn_parameters.Parameters(), onnx_infer, CROP_BATCH)
        )
        assert_same_faces(got, oracle(detector, image), name)


@pytest.mark.slow
@pytest.mark.parametrize("megapixels", [1, 3, 12])
def test_detect_faces_at_phone_photo_sizes_matches_the_package(
    onnx_infer, detector, megapixels: int
) -> None:  # type: ignore[no-untyped-def]
    """The same oracle on 1, 3 and 12 MP phone photos (six faces each), decoded as the gateway
    decodes them: the numpy pyramid at the sizes whose cost it was made for."""
    image = decoded(jpeg_bytes(real_photo(megapixels)))
    want = oracle(detector, image)
    assert len(want) >= 5
    got = asyncio.run(
        mtcnn_cascade.detect_faces(image, mtcnn_parameters.Parameters(), onnx_infer, CROP_BATCH)
    )
    assert_same_faces(got, want, f"{megapixels} MP")


@pytest.mark.slow
def test_detect_faces_with_the_pyramid_in_the_graph_matches_the_package(
    onnx_infer, detector
) -> None:  # type: ignore[no-untyped-def]
    """The same oracle with every level made by mtcnn_pyramid_pnet's graph (never mtcnn_pnet)."""
    images = {**photos(), "collage": collage()}
    for name, image in images.items():
        onnx_infer.calls.clear()
        got = asyncio.run(
            mtcnn_cascade.detect_faces(
                image, mtcnn_parameters.Parameters(), onnx_infer, CROP_BATCH, True
            )
        )
        assert_same_faces(got, oracle(detector, image), name)
        models = {model for model, _ in onnx_infer.calls}
        assert "mtcnn_pyramid_pnet" in models and "mtcnn_pnet" not in models, name


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(864, 1152), (401, 299), (131, 90), (24, 33)])
def test_pyramid_graph_gives_pnet_the_numpy_levels(onnx_infer, monkeypatch, shape) -> None:  # type: ignore[no-untyped-def]
    """mtcnn_pyramid_pnet on the photo and a band's tables gives what mtcnn_pnet gives on
    the same band of the numpy level, for every level and band (small bands: many of them); with
    min_face_size 12 the first level is the photo at scale 1."""
    monkeypatch.setattr(mtcnn_pyramid, "PNET_BAND_PIXELS", 40 * shape[1])
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    sums = mtcnn_pyramid.running_sums(image)
    outputs = ["offsets", "probabilities"]
    scales = mtcnn_pyramid.pyramid_scales(*shape, 12, mtcnn_parameters.Parameters().scale_factor)
    bands = 0
    for scale in scales:
        size = mtcnn_pyramid.level_size(*shape, scale)
        level = mtcnn_pyramid.area_level(image, sums, *size)
        tables = mtcnn_pyramid.AreaTables.make(*shape, *size)
        for a, b in mtcnn_pyramid.pnet_bands(*size):
            feed = tables.band_inputs(image, a, b)
            assert feed["image"] is image
            got = asyncio.run(onnx_infer("mtcnn_pyramid_pnet", feed, outputs))
            want = asyncio.run(onnx_infer("mtcnn_pnet", {"image": level[None, :, a:b]}, outputs))
            for name in outputs:
                assert got[name].shape == want[name].shape
                np.testing.assert_allclose(got[name], want[name], atol=1e-4, err_msg=str(size))
            bands += 1
    assert bands >= len(scales) >= 1


def test_pyramid_graph_takes_only_8_bit_pixels() -> None:
    async def no_network(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        raise AssertionError("no network call expected")

    image = np.zeros((40, 40, 3), np.float32)
    with pytest.raises(mtcnn_parameters.CascadeError, match="8-bit pixels, not float32"):
        asyncio.run(
            mtcnn_cascade.detect_faces(
                image, mtcnn_parameters.Parameters(), no_network, CROP_BATCH, True
            )
        )


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(400, 300), (401, 299), (131, 90)])
def test_pnet_in_bands_gives_the_whole_levels_output(onnx_infer, monkeypatch, shape) -> None:  # type: ignore[no-untyped-def]
    """PNet's output over bands of rows, stacked, equals its output over the whole level."""
    monkeypatch.setattr(mtcnn_pyramid, "PNET_BAND_PIXELS", 30 * shape[1])
    level = np.random.default_rng(0).uniform(0, 255, (1, 3, *shape)).astype(np.float32)
    outputs = ["offsets", "probabilities"]
    whole = asyncio.run(onnx_infer("mtcnn_pnet", {"image": level}, outputs))
    bands = mtcnn_pyramid.pnet_bands(*shape)
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
    params = mtcnn_parameters.Parameters()
    onnx_infer.calls.clear()
    whole = asyncio.run(mtcnn_cascade.detect_faces(image, params, onnx_infer, CROP_BATCH))
    calls = list(onnx_infer.calls)
    levels = len(
        mtcnn_pyramid.pyramid_scales(*image.shape[:2], params.min_face_size, params.scale_factor)
    )
    assert [m for m, _ in calls].count("mtcnn_pnet") == levels
    rnet = [n for m, n in calls if m == "mtcnn_rnet"]
    onet = [n for m, n in calls if m == "mtcnn_onet"]
    assert len(rnet) == 1 and rnet[0] > 5
    assert len(onet) == 1 and onet[0] >= len(whole.scores) == 7
    onnx_infer.calls.clear()
    chunked = asyncio.run(mtcnn_cascade.detect_faces(image, params, onnx_infer, crop_batch_size=5))
    rnet_chunks = [n for m, n in onnx_infer.calls if m == "mtcnn_rnet"]
    assert sum(rnet_chunks) == rnet[0] and max(rnet_chunks) <= 5
    assert len(rnet_chunks) == math.ceil(rnet[0] / 5)
    np.testing.assert_allclose(chunked.boxes, whole.boxes, atol=1e-3)


@pytest.mark.slow
def test_detect_faces_with_nothing_filtered_does_bounded_work(onnx_infer) -> None:  # type: ignore[no-untyped-def]
    """threshold_pnet=0 makes each of the collage's ~150k PNet cells a proposal, and no NMS or
    threshold drops any: RNet and ONet still see at most PNET_TOP_K crops."""
    onnx_infer.calls.clear()
    params = mtcnn_parameters.Parameters().update(NOTHING_FILTERED)
    faces = asyncio.run(mtcnn_cascade.detect_faces(collage(), params, onnx_infer, CROP_BATCH))
    rnet = sum(n for m, n in onnx_infer.calls if m == "mtcnn_rnet")
    onet = sum(n for m, n in onnx_infer.calls if m == "mtcnn_onet")
    assert (
        rnet == onet == mtcnn_cascade.PNET_TOP_K and len(faces.scores) <= mtcnn_cascade.PNET_TOP_K
    )


def test_detect_faces_on_tiny_images_needs_no_network() -> None:
    async def no_network(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        raise AssertionError("no network call expected")

    for shape in ((11, 11, 3), (1, 600, 3), (600, 1, 3), (0, 0, 3)):
        image = np.zeros(shape, np.uint8)
        faces = asyncio.run(
            mtcnn_cascade.detect_faces(image, mtcnn_parameters.Parameters(), no_network, CROP_BATCH)
        )
        assert faces.boxes.shape == (0, 4) and faces.landmarks.shape == (0, 5, 2)


def test_detect_faces_rejects_images_that_are_not_rgb() -> None:
    async def no_network(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        raise AssertionError("no network call expected")

    with pytest.raises(mtcnn_parameters.CascadeError, match="height x width x 3"):
        image = np.zeros((50, 50), np.uint8)
        asyncio.run(
            mtcnn_cascade.detect_faces(image, mtcnn_parameters.Parameters(), no_network, CROP_BATCH)
        )
