"""The darknet network in TensorFlow / Keras: the source model that the ONNX export is validated
against, and the YOLO decode."""

from __future__ import annotations

from typing import Any

import numpy as np

from conversion.darknet.cfg import LEAKY_SLOPE, Conv, Network
from conversion.darknet.layers import LAYERS, ConvFn, KerasWalk
from conversion.darknet.weights_file import ConvWeights


def walk(network: Network, x: Any, conv_fn: ConvFn) -> list[Any]:
    """Run the layers on `x` (a Keras symbolic tensor or an eager tensor) with `conv_fn` for the
    convolutions; returns the raw outputs of the `[yolo]` layers, NHWC."""
    state = KerasWalk({conv.index: conv for conv in network.convs}, conv_fn)
    for index, layer in enumerate(network.layers):
        x = LAYERS[layer.kind].keras(state, index, layer, x)
        state.outputs.append(x)
    return [state.outputs[yolo.index] for yolo in network.yolos]


def apply_conv(conv: Conv, x: Any, kernel: np.ndarray, bias: np.ndarray) -> Any:
    """Darknet convolution (symmetric zero padding, then a valid convolution) and activation."""
    import keras

    if conv.padding:
        x = keras.layers.ZeroPadding2D(conv.padding)(x)
    layer = keras.layers.Conv2D(conv.filters, conv.size, conv.stride, padding="valid")
    y = layer(x)
    layer.set_weights([kernel, bias])
    if conv.activation == "leaky":
        y = keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE)(y)
    return y


def keras_model(network: Network, weights: list[ConvWeights], size: int) -> Any:
    """The network as a Keras model: float RGB in [0, 1], [None, size, size, C] in; the raw
    `[yolo]` head outputs out."""
    import keras

    folded = {conv.index: w.folded() for conv, w in zip(network.convs, weights, strict=True)}
    image = keras.Input((size, size, network.channels), name="image")
    heads = walk(network, image, lambda conv, x: apply_conv(conv, x, *folded[conv.index]))
    return keras.Model(image, heads, name=network.name)


def decode(network: Network, heads: list[Any], size: int) -> tuple[Any, Any]:
    """YOLO decoding in TensorFlow: boxes [B, N, 4] as x_min, y_min, x_max, y_max in input pixels
    and scores [B, N, classes] = objectness x class probability. Rows are ordered head by head,
    then cell (row-major), then anchor, as darknet and OpenCV order them."""
    import tensorflow as tf

    boxes, scores = [], []
    for yolo, head in zip(network.yolos, heads, strict=True):
        rows, cols = int(head.shape[1]), int(head.shape[2])
        anchors = len(yolo.anchors)
        # Constants as numpy arrays: tf2onnx embeds them (a captured tf.constant becomes an input).
        grid = np.stack(np.meshgrid(np.arange(cols), np.arange(rows)), axis=-1).astype(np.float32)
        grid = np.repeat(grid.reshape(-1, 1, 2), anchors, axis=1).reshape(1, -1, 2)
        anchor_wh = np.tile(np.array(yolo.anchors, np.float32), (rows * cols, 1))[None]
        stride = np.array([size / cols, size / rows], np.float32)
        t = tf.reshape(head, [-1, rows * cols * anchors, 5 + yolo.classes])
        centre = (tf.sigmoid(t[..., 0:2]) + grid) * stride
        half = tf.exp(t[..., 2:4]) * anchor_wh / 2.0
        boxes.append(tf.concat([centre - half, centre + half], axis=-1))
        scores.append(tf.sigmoid(t[..., 4:5]) * tf.sigmoid(t[..., 5:]))
    return tf.concat(boxes, axis=1), tf.concat(scores, axis=1)
