"""A darknet network written straight to ONNX, layer by layer, with the YOLO decode.

Why not tf2onnx here: on yolov3's 62 million weights tf2onnx's graph rewrites hold ~17 GB
(measured), more than the CI machine and the shared workstation have. Writing the ONNX nodes
directly needs the weights once (~0.5 GB) and a second; the Keras model of `darknet.py` stays the
source model that the export is validated against, and OpenCV's darknet importer the oracle.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from conversion.darknet import LEAKY_SLOPE, ConvWeights, Network, absolute_index
from conversion.onnx_graph import Graph


def build(network: Network, weights: list[ConvWeights], size: int) -> onnx.ModelProto:
    """`image` UINT8 [batch, size, size, C] RGB in; `boxes` [batch, N, 4] (x_min, y_min, x_max,
    y_max in input pixels) and `scores` [batch, N, classes] out, rows ordered as in
    `darknet.decode`."""
    g = Graph()
    folded = {conv.index: w.folded() for conv, w in zip(network.convs, weights, strict=True)}
    convs = {conv.index: conv for conv in network.convs}
    x = g.op("Cast", ["image"], to=TensorProto.FLOAT)
    x = g.op("Mul", [x, g.const(np.array(1 / 255, np.float32))])
    x = g.op("Transpose", [x], perm=[0, 3, 1, 2])  # NCHW inside
    outputs: list[str] = []
    heads: list[str] = []
    spatial = size
    sizes: list[int] = []  # spatial size after each layer
    for index, layer in enumerate(network.layers):
        if layer.kind == "convolutional":
            conv = convs[index]
            kernel, bias = folded[index]
            p = conv.padding
            x = g.op(
                "Conv",
                [x, g.const(kernel.transpose(3, 2, 0, 1), "kernel"), g.const(bias, "bias")],
                kernel_shape=[conv.size, conv.size],
                strides=[conv.stride, conv.stride],
                pads=[p, p, p, p],
            )
            spatial = (spatial + 2 * p - conv.size) // conv.stride + 1
            if conv.activation == "leaky":
                x = g.op("LeakyRelu", [x], alpha=LEAKY_SLOPE)
        elif layer.kind == "route":
            sources = [absolute_index(index, i) for i in layer.ints("layers")]
            parts = [outputs[s] for s in sources]
            x = parts[0] if len(parts) == 1 else g.op("Concat", parts, axis=1)
            spatial = sizes[sources[0]]
        elif layer.kind == "shortcut":
            x = g.op("Add", [x, outputs[absolute_index(index, int(layer.get("from")))]])
        elif layer.kind == "upsample":
            stride = int(layer.get("stride", "2"))
            scales = g.const(np.array([1, 1, stride, stride], np.float32), "scales")
            x = g.op(
                "Resize",
                [x, "", scales],
                mode="nearest",
                nearest_mode="floor",
                coordinate_transformation_mode="asymmetric",
            )
            spatial *= stride
        elif layer.kind == "maxpool":
            pool, stride = int(layer.get("size", "1")), int(layer.get("stride", "1"))
            # darknet pads size - 1 in all, (size - 1) // 2 of it before; padding never wins.
            before, after = (pool - 1) // 2, pool - 1 - (pool - 1) // 2
            x = g.op(
                "MaxPool",
                [x],
                kernel_shape=[pool, pool],
                strides=[stride, stride],
                pads=[before, before, after, after],
            )
            spatial = (spatial + pool - 1 - pool) // stride + 1
        elif layer.kind == "yolo":
            heads.append(x)
        outputs.append(x)
        sizes.append(spatial)
    boxes, scores = [], []
    for yolo, head in zip(network.yolos, heads, strict=True):
        b, s = _decode(g, head, yolo.anchors, yolo.classes, sizes[yolo.index], size)
        boxes.append(b)
        scores.append(s)
    g.op("Concat", boxes, "boxes", axis=1)
    g.op("Concat", scores, "scores", axis=1)
    return g.model(
        network.name,
        [
            helper.make_tensor_value_info(
                "image", TensorProto.UINT8, ["batch", size, size, network.channels]
            )
        ],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", "candidates", 4]),
            helper.make_tensor_value_info(
                "scores", TensorProto.FLOAT, ["batch", "candidates", network.classes]
            ),
        ],
    )


def _decode(
    g: Graph,
    head: str,
    anchors: tuple[tuple[float, float], ...],
    classes: int,
    cells: int,
    size: int,
) -> tuple[str, str]:
    """sigmoid + grid offset for the centre, exp x anchor for the size, objectness x class."""
    count = cells * cells * len(anchors)
    t = g.op("Transpose", [head], perm=[0, 2, 3, 1])
    t = g.op("Reshape", [t, g.const(np.array([-1, count, 5 + classes], np.int64), "shape")])
    split = g.const(np.array([2, 2, 1, classes], np.int64), "split")
    names = [g.name(n) for n in ("xy", "wh", "objectness", "classes")]
    g.nodes.append(helper.make_node("Split", [t, split], names, axis=2))
    xy, wh, objectness, class_logits = names
    grid = np.stack(np.meshgrid(np.arange(cells), np.arange(cells)), axis=-1).astype(np.float32)
    grid = np.repeat(grid.reshape(-1, 1, 2), len(anchors), axis=1).reshape(1, -1, 2)
    stride = np.float32(size / cells)
    half_anchor = np.tile(np.array(anchors, np.float32) / 2, (cells * cells, 1))[None]
    centre = g.op(
        "Mul",
        [
            g.op("Add", [g.op("Sigmoid", [xy]), g.const(grid, "grid")]),
            g.const(np.array(stride), "stride"),
        ],
    )
    half = g.op("Mul", [g.op("Exp", [wh]), g.const(half_anchor, "anchors")])
    box = g.op("Concat", [g.op("Sub", [centre, half]), g.op("Add", [centre, half])], axis=2)
    score = g.op("Mul", [g.op("Sigmoid", [objectness]), g.op("Sigmoid", [class_logits])])
    return box, score
