"""The exporters `picmetric convert` knows, by name. Each module provides
`add_arguments(parser)` for its options and `run(args)` to convert and install."""

from __future__ import annotations

from types import ModuleType

from conversion import mtcnn, resnet50, yolov3


def converters() -> dict[str, ModuleType]:
    return {"resnet50": resnet50, "mtcnn": mtcnn, "yolov3": yolov3}
