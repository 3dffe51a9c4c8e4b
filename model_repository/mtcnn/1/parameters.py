"""The cascade's parameters (defaults from config.pbtxt, overrides per request), the deployment's
(config.pbtxt only), and the error a request the cascade cannot run fails with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from .common import ParameterError, from_parameters, with_parameters

# A scale_factor up to MAX_SCALE_FACTOR keeps the pyramid at most about 60 levels.
MAX_SCALE_FACTOR = 0.9
# Where the pyramid is made (config.pbtxt's `pyramid`; see `Deployment`).
PYRAMIDS = ("auto", "graph", "numpy")


class CascadeError(ValueError):
    """A request the cascade cannot run: a bad parameter or an unusable image."""


@dataclass(frozen=True)
class Parameters:
    """The cascade's knobs, named as the mtcnn package's detect_faces() keyword arguments. The
    server takes its defaults from config.pbtxt (`from_config`); these, for the pure functions
    and benchmarks, are the same (a unit test checks)."""

    min_face_size: float = 20.0
    scale_factor: float = 0.709
    threshold_pnet: float = 0.6
    threshold_rnet: float = 0.7
    threshold_onet: float = 0.8
    nms_pnet1: float = 0.5  # per pyramid level
    nms_pnet2: float = 0.7  # across levels
    nms_rnet: float = 0.7
    nms_onet: float = 0.7  # IoU over the smaller box

    def check(self) -> Parameters:
        if not self.min_face_size > 0:
            raise CascadeError(f"min_face_size must be > 0, got {self.min_face_size}.")
        if not 0 < self.scale_factor <= MAX_SCALE_FACTOR:
            raise CascadeError(
                f"scale_factor must be > 0 and at most {MAX_SCALE_FACTOR}, got {self.scale_factor}."
            )
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name.startswith(("threshold_", "nms_")) and not 0 <= value <= 1:
                raise CascadeError(f"{field.name} must be between 0 and 1, got {value}.")
        return self

    @classmethod
    def from_config(cls, values: Mapping[str, object]) -> Parameters:
        """The parameters from config.pbtxt, which must name every one (it is their source)."""
        try:
            return from_parameters(cls, values).check()
        except ParameterError as exc:
            raise CascadeError(str(exc)) from None

    def update(self, values: str | Mapping[str, object]) -> Parameters:
        """A copy with `values` applied: Triton request parameters (their JSON text or a
        mapping of numbers or numeric strings), every name one of the fields."""
        try:
            return with_parameters(self, values).check()
        except ParameterError as exc:
            raise CascadeError(str(exc)) from None


@dataclass(frozen=True)
class Deployment:
    """config.pbtxt's parameters that belong to the deployment, not to a request:

    - `crop_batch_size`: crops per RNet/ONet request, within their max_batch_size;
    - `pyramid`: where the pyramid levels are made. `numpy`: in this model (pyramid.py, in
      worker threads), the faster on a CPU; `graph`: in `mtcnn_pyramid_pnet`, with PNet, so on a
      GPU host on the GPU; `auto`: `graph` when Triton placed this instance on a GPU (its
      KIND_AUTO does on a GPU host), `numpy` otherwise."""

    crop_batch_size: int
    pyramid_in_graph: bool

    KEYS = ("crop_batch_size", "pyramid")

    @classmethod
    def from_config(cls, values: Mapping[str, str], instance_kind: str) -> Deployment:
        """From config.pbtxt's parameters (which must name both) and Triton's instance kind
        of this model ("CPU", "GPU", ...)."""
        missing = [key for key in cls.KEYS if key not in values]
        if missing:
            raise CascadeError(f"config.pbtxt parameters {missing} are missing.")
        pyramid = values["pyramid"]
        if pyramid not in PYRAMIDS:
            raise CascadeError(
                f"config.pbtxt parameter 'pyramid' must be one of {list(PYRAMIDS)}, "
                f"not {pyramid!r}."
            )
        in_graph = pyramid == "graph" or (pyramid == "auto" and instance_kind == "GPU")
        return cls(int(values["crop_batch_size"]), in_graph)
