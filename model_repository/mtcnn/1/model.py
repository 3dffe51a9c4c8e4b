"""MTCNN face detection: the cascade in cascade.py (with pyramid.py and boxes.py), with PNet,
RNet and ONet (`mtcnn_pnet` or `mtcnn_pyramid_pnet`, `mtcnn_rnet`, `mtcnn_onet`) called through
BLS. Each pyramid level's PNet requests (large levels in bands of rows) go out as soon as the
level is ready, all in flight together, as are the requests of one execute(); RNet's and ONet's
crop batches go one after another.

Input `image` UINT8 [height, width, 3] RGB. Outputs in original pixels, best first: `boxes`
FP32 [n, 4] (x_min, y_min, x_max, y_max), `scores` FP32 [n], `landmarks` FP32 [n, 5, 2] (x, y)
for left_eye, right_eye, nose, mouth_left, mouth_right. An image too small for PNet's 12-px
window has no faces. The cascade's parameters (see `parameters.Parameters`) default to this
model's config.pbtxt `parameters`, which must name them all, and can be overridden per request
with Triton request parameters; an unknown name or a bad value fails that request alone, as does
a request over the cascade's budgets (pyramid.py).

Where the pyramid is made (numpy here, or the graph of `mtcnn_pyramid_pnet`, on the GPU of a GPU
host) is config.pbtxt's `pyramid`: see `parameters.Deployment`.

Needs only numpy and Triton's Python backend (no OpenCV, no `picmetric`), so it runs unchanged
in the NGC image.
"""

import asyncio
import functools
import json

import numpy as np
import triton_python_backend_utils as pb_utils

from .cascade import detect_faces
from .parameters import CascadeError, Deployment, Parameters

OUTPUTS = ("boxes", "scores", "landmarks")


class SubModelError(RuntimeError):
    """PNet, RNet or ONet answered a BLS request with an error."""


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        values = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.deployment = Deployment.from_config(values, args.get("model_instance_kind", "CPU"))
        self.defaults = Parameters.from_config(
            {key: value for key, value in values.items() if key not in Deployment.KEYS}
        )
        self.dtypes = {
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]
        }
        self.cpu = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)

    async def execute(self, requests: list) -> list:
        return list(await asyncio.gather(*(self._respond(r) for r in requests)))

    async def _respond(self, request) -> "pb_utils.InferenceResponse":
        try:
            given = pb_utils.get_input_tensor_by_name(request, "image")
            image = given.as_numpy()
            params = self.defaults.update(request.parameters())
            faces = await detect_faces(
                image,
                params,
                functools.partial(self._infer, {id(image): given}, request.trace()),
                self.deployment.crop_batch_size,
                self.deployment.pyramid_in_graph,
            )
        except CascadeError as exc:
            error = pb_utils.TritonError(f"mtcnn: {exc}", pb_utils.TritonError.INVALID_ARG)
            return pb_utils.InferenceResponse(error=error)
        except Exception as exc:  # one failing request must not take its neighbours down
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"mtcnn: {exc}"))
        arrays = {"boxes": faces.boxes, "scores": faces.scores, "landmarks": faces.landmarks}
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor(name, np.ascontiguousarray(arrays[name], self.dtypes[name]))
                for name in OUTPUTS
            ]
        )

    async def _infer(
        self,
        given: dict[int, "pb_utils.Tensor"],
        trace: "pb_utils.InferenceTrace",
        model: str,
        inputs: dict[str, np.ndarray],
        outputs: list[str],
    ) -> dict[str, np.ndarray]:
        """A BLS request. An input that is the request's own `image` (`given`, by the identity
        of its array: mtcnn_pyramid_pnet gets the whole photo for every band) goes on as the
        tensor Triton gave, already in shared memory; the others are copied there. It joins the
        request's trace (`trace`: with Triton's OpenTelemetry tracing on, its spans hang under
        the mtcnn request's)."""
        request = pb_utils.InferenceRequest(
            model_name=model,
            inputs=[
                given[id(a)] if id(a) in given else pb_utils.Tensor(name, np.ascontiguousarray(a))
                for name, a in inputs.items()
            ],
            requested_output_names=outputs,
            preferred_memory=self.cpu,
            trace=trace,
        )
        response = await request.async_exec()
        if response.has_error():
            raise SubModelError(f"{model} failed: {response.error().message()}")
        return {
            name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs
        }
