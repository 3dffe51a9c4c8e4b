"""The exporters `picmetric convert` knows, by name. Listing them and their options imports
nothing heavy; an exporter's module (ONNX, TensorFlow) is imported only when it runs, so
`picmetric --help` works in the gateway image, which has neither."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from conversion import yolov3_options


def _no_options(parser: argparse.ArgumentParser) -> None:
    """Only the common options (MTCNN always uses the weights inside the mtcnn package)."""


@dataclass(frozen=True)
class Converter:
    """An exporter: `module` has `run(args)`, which converts and installs."""

    module: str
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_options

    def run(self, args: argparse.Namespace) -> None:
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:  # the gateway's set, say
            raise RuntimeError(
                f"picmetric convert needs the convert set ({exc.name} is missing): use the "
                "convert image, or pip install '.[convert]'."
            ) from exc
        module.run(args)


def converters() -> dict[str, Converter]:
    return {
        "resnet50": Converter("conversion.resnet50"),
        "mtcnn": Converter("conversion.mtcnn"),
        "yolov3": Converter("conversion.yolov3", yolov3_options.add_arguments),
    }
