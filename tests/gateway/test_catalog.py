"""The catalog reads each model's square input size from Triton, so the gateway letterboxes
for the size a model was converted with."""

from __future__ import annotations

import pytest
import tritonclient.grpc as grpcclient

from core.models import OFFERED_MODELS
from gateway.catalog import square_input_size
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
