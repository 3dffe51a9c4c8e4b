"""`picmetric convert yolov3`'s options, apart from the exporter so that listing them imports
neither ONNX nor TensorFlow."""

from __future__ import annotations

import argparse

from core.preprocessing import YOLOV3_INPUT_SIZE

CFGS = ("yolov3.cfg", "yolov3-tiny.cfg")  # bundled in conversion/data/
SIZES = (320, 416, 608)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cfg",
        default="yolov3.cfg",
        help=f"darknet network: {' or '.join(CFGS)} (bundled) or a path to a .cfg",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=YOLOV3_INPUT_SIZE,
        choices=SIZES,
        help="network input size in pixels (square)",
    )
