"""A darknet network written straight to ONNX, layer by layer, with the YOLO decode.

Why not tf2onnx here: on yolov3's 62 million weights tf2onnx's graph rewrites hold ~17 GB
(measured), more than the CI machine and the shared workstation have. Writing the ONNX nodes
directly needs the weights once (~0.5 GB) and a second; the Keras model of `darknet/keras_graph.py`
stays the source model that the export is validated against, and OpenCV's darknet importer the
oracle. Each layer type's ONNX nodes are in `darknet/layers.py`, beside its Keras layers.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from conversion.darknet import ConvWeights, Network
from conversion.darknet.layers import LAYERS, OnnxWalk
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
    walk = OnnxWalk(g, convs, folded, spatial=size)
    for index, layer in enumerate(network.layers):
        x, walk.spatial = LAYERS[layer.kind].onnx(walk, index, layer, x)
        walk.outputs.append(x)
        walk.sizes.append(walk.spatial)
    boxes, scores = [], []
    for yolo in network.yolos:
        head = walk.outputs[yolo.index]
        b, s = _decode(g, head, yolo.anchors, yolo.classes, walk.sizes[yolo.index], size)
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
