"""The stand-in backend's OpenVINO engine (picmetric/backends/onnxruntime/model.py): which engine
and precision a config asks for and a host runs, parity with ONNX Runtime on every network, MTCNN
in BF16 against the mtcnn package, and a repository switched to OpenVINO inside a real Triton."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient

from conversion import mtcnn as mtcnn_converter
from conversion.samples import sample_photos
from picmetric import cpu_engine
from picmetric.repository import copy_models
from picmetric.triton_server import TritonPorts, TritonServer
from tests.utils.mtcnn_faces import assert_same_faces, cascade, infer, oracle
from tests.utils.ports import free_port
from tests.utils.real_photos import decoded, jpeg_bytes, real_photo

openvino = pytest.importorskip("openvino")
HOST_BF16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
MTCNN_MODELS = ["mtcnn", "mtcnn_onet", "mtcnn_pnet", "mtcnn_pyramid_pnet", "mtcnn_rnet"]


def _openvino_config(**parameters: str) -> dict:
    """A config as Triton hands it to a Python model (JSON), with the OpenVINO accelerator."""
    accelerator = {"name": "openvino", "parameters": parameters}
    return {
        "optimization": {"execution_accelerators": {"cpu_execution_accelerator": [accelerator]}}
    }


def test_requested_engine_reads_the_accelerator_and_our_precision(backend) -> None:  # type: ignore[no-untyped-def]
    assert backend.requested_engine({}) == backend.Engine("onnxruntime", "FP32")
    assert backend.requested_engine(_openvino_config()) == backend.Engine("openvino", "FP32")
    bf16 = _openvino_config(inference_precision="bf16")
    assert backend.requested_engine(bf16) == backend.Engine("openvino", "BF16")


@pytest.mark.parametrize(
    ("config", "refusal"),
    [
        # the native backend's own words for an accelerator it does not know
        (
            {
                "optimization": {
                    "execution_accelerators": {"cpu_execution_accelerator": [{"name": "tvm"}]}
                }
            },
            "unknown Execution Accelerator 'tvm' is requested",
        ),
        (_openvino_config(inference_precision="INT8"), "inference_precision is 'INT8'"),
    ],
)
def test_requested_engine_refuses_what_it_cannot_run(backend, config: dict, refusal: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(backend.EngineError, match=refusal):
        backend.requested_engine(config)


def test_host_without_bf16_runs_fp32_and_says_why(backend) -> None:  # type: ignore[no-untyped-def]
    precision, reason = backend.host_precision("BF16", ["FP32", "INT8", "BIN"])
    assert precision == "FP32"
    assert "this CPU has no BF16 units" in reason and "running FP32 instead" in reason
    assert backend.host_precision("BF16", ["BF16", "FP32"]) == ("BF16", "BF16 requested")
    assert backend.host_precision("FP32", ["BF16", "FP32"]) == ("FP32", "FP32 requested")


def test_openvino_missing_refuses_to_load_with_what_to_do(backend, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(backend.EngineError, match="no `openvino` package: install the `triton`"):
        backend.OpenVINORunner("model.onnx", "FP32", 0, 100)


# --- parity with ONNX Runtime -----------------------------------------------------------------


def _feeds() -> dict[str, dict[str, np.ndarray]]:
    """Real photos at each network's input: 8 for ResNet50, one for YOLOv3, a PNet level, 64 RNet
    and 32 ONet crops."""
    photos = sample_photos(("astronaut", "chelsea", "coffee", "rocket"))

    def crops(side: int, count: int) -> np.ndarray:
        out = []
        for image in photos.values():
            for k in range(count // len(photos)):
                y, x = (
                    (k * 37) % (image.shape[0] - 2 * side),
                    (k * 53) % (image.shape[1] - 2 * side),
                )
                out.append(cv2.resize(image[y : y + 2 * side, x : x + 2 * side], (side, side)))
        return np.stack(out).transpose(0, 3, 1, 2).astype(np.float32)

    square = [cv2.resize(image, (224, 224)) for image in photos.values()]
    return {
        "resnet50": {"image": np.stack(square * 2)},
        "yolov3_backbone": {"image": cv2.resize(photos["astronaut"], (416, 416))[None]},
        "mtcnn_pnet": {
            "image": cv2.resize(photos["astronaut"], (300, 250))
            .transpose(2, 0, 1)[None]
            .astype(np.float32)
        },
        "mtcnn_rnet": {"image": crops(24, 64)},
        "mtcnn_onet": {"image": crops(48, 32)},
    }


# Today's tolerances: the converters' validation (1e-4) and YOLOv3's against OpenCV (1e-3 of the
# input size for boxes, 1e-3 for scores). Measured OpenVINO FP32 against ONNX Runtime: 1.1e-6
# (ResNet50), 1.2e-2 px on 416 and 3e-5 (YOLOv3), at most 2.7e-6 (MTCNN's nets).
FP32_ATOL = {"boxes": 416e-3, "scores": 1e-3}


@pytest.mark.slow
@pytest.mark.parametrize(
    "network", ["resnet50", "yolov3_backbone", "mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet"]
)
def test_openvino_fp32_matches_onnxruntime_within_todays_tolerances(
    backend,
    model_repository: Path,
    network: str,  # type: ignore[no-untyped-def]
) -> None:
    """Oracle: ONNX Runtime's CPU kernels on the same ONNX file (random ResNet50/YOLOv3 weights,
    MTCNN's real ones); tolerance 1e-4, YOLOv3's boxes 1e-3 of 416 px and scores 1e-3."""
    path = str(model_repository / network / "1" / "model.onnx")
    feed = _feeds()[network]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    runner = backend.OpenVINORunner(path, "FP32", 0, backend.RUNTIME_CACHE)
    assert runner.precision == "FP32"
    for name, got, want in zip(
        names, runner.run(names, feed), session.run(names, feed), strict=True
    ):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        assert np.max(np.abs(got - want)) < FP32_ATOL.get(name, 1e-4), f"{network} {name}"


@pytest.fixture(scope="module")
def mtcnn_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MTCNN's models with their real weights (the mtcnn wheel's), converted."""
    repository = copy_models(MTCNN_MODELS, tmp_path_factory.mktemp("mtcnn_repository"))
    mtcnn_converter.convert(repository)
    return repository


@pytest.fixture(scope="module")
def phone_photos() -> dict[int, tuple[np.ndarray, Any]]:
    """1, 3 and 12 MP JPEG phone photos, decoded as the gateway decodes them, with the faces
    the mtcnn package finds on them."""
    from mtcnn import MTCNN

    detector = MTCNN()
    photos = {}
    for megapixels in (1, 3, 12):
        image = decoded(jpeg_bytes(real_photo(megapixels)))
        photos[megapixels] = image, oracle(detector, image)
    return photos


@pytest.mark.slow
@pytest.mark.skipif(not HOST_BF16, reason="this CPU has no BF16 units (OpenVINO runs FP32)")
@pytest.mark.parametrize("pyramid_in_graph", [False, True])
def test_mtcnn_at_cpu_engine_bf16_matches_the_mtcnn_package_iou95_score001_landmarks2px(
    backend,
    mtcnn_repository: Path,
    phone_photos: dict,
    pyramid_in_graph: bool,  # type: ignore[no-untyped-def]
) -> None:
    """Oracle: MTCNN().detect_faces() at 1, 3 and 12 MP, with each network at the precision
    `picmetric cpu-engine openvino --precision bf16` gives it (ONet BF16, the rest FP32).
    Measured: IoU > 0.99, landmarks within 0.5 px, scores within 0.002; with PNet or RNet in
    BF16 it fails (BENCHMARKS.md), which is why they stay FP32."""
    mc = cascade()
    runners = {
        model: backend.OpenVINORunner(
            str(mtcnn_repository / model / "1" / "model.onnx"),
            cpu_engine.precision_for(model, "bf16"),
            0,
            backend.RUNTIME_CACHE,
        )
        for model in MTCNN_MODELS[1:]
    }
    assert runners["mtcnn_onet"].precision == "BF16"

    async def run(model: str, inputs: dict, outputs: list[str]) -> dict[str, np.ndarray]:
        return dict(zip(outputs, runners[model].run(outputs, inputs), strict=True))

    for megapixels, (image, want) in phone_photos.items():
        got = asyncio.run(mc.detect_faces(image, mc.Parameters(), run, 256, pyramid_in_graph))
        assert_same_faces(got, want, f"{megapixels} MP")


# --- inside Triton ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openvino_triton(
    mtcnn_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """A real Triton serving MTCNN after `picmetric cpu-engine openvino --precision bf16`."""
    cpu_engine.switch(mtcnn_repository, "openvino", "bf16")
    ports = TritonPorts(free_port(), free_port(), free_port())
    log_file = tmp_path_factory.mktemp("triton_openvino") / "tritonserver.log"
    with TritonServer(mtcnn_repository, ports, log_file=log_file) as server:
        yield server


@pytest.mark.integration
@pytest.mark.slow
def test_a_repository_switched_to_openvino_loads_in_triton_says_its_precisions_and_answers(
    openvino_triton: TritonServer, phone_photos: dict
) -> None:
    """Each network logs its engine and precision at load (ONet BF16 where the CPU has it, FP32
    otherwise and why); MTCNN through Triton equals the mtcnn package at 1 MP."""
    log = openvino_triton.log_file.read_text()
    onet = "BF16 (BF16 requested)" if HOST_BF16 else "FP32 (BF16 requested, but this CPU has no"
    assert f"mtcnn_onet: OpenVINO {openvino.get_version()} at {onet}" in log
    for model in ("mtcnn_pnet", "mtcnn_pyramid_pnet", "mtcnn_rnet"):
        assert f"{model}: OpenVINO {openvino.get_version()} at FP32 (FP32 requested)" in log
    image, want = phone_photos[1]
    with grpcclient.InferenceServerClient(openvino_triton.grpc_url) as client:
        assert_same_faces(infer(client, image), want, "1 MP through Triton on OpenVINO")
