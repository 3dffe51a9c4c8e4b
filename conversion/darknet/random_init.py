"""Deterministic random weights for a darknet network (tests, and serving without downloads)."""

from __future__ import annotations

from typing import Any

import numpy as np

from conversion.darknet.cfg import LEAKY_SLOPE, Conv, Network
from conversion.darknet.keras_graph import walk
from conversion.darknet.weights_file import ConvWeights

# Random detection heads, per anchor: (kernel scale, bias mean, bias spread) of the logits for
# x/y offset, w/h log-scale, objectness and class. Most candidates are unlikely, as in a trained
# detector, so thresholds and NMS see tens of boxes, of about anchor size, not thousands.
RANDOM_HEAD_XY = (1.0, 0.0, 0.5)
RANDOM_HEAD_WH = (0.3, 0.0, 0.3)
RANDOM_HEAD_OBJECTNESS = (1.5, -4.0, 0.5)
RANDOM_HEAD_CLASS = (1.5, -3.5, 0.5)


def _round(values: np.ndarray) -> np.ndarray:
    """Statistics measured in float32 differ in the last bits between CPUs; rounding them to
    float16 precision makes the generated file the same bytes everywhere (in practice)."""
    return values.astype(np.float16).astype(np.float32)


def random_weights(network: Network, seed: int, calibration: np.ndarray) -> list[ConvWeights]:
    """Deterministic random weights with sensible activations through every layer.

    Kernels are He-normal; each batch norm's mean and variance are measured on `calibration`
    (float RGB in [0, 1], [1, H, W, C]) as training would, so every layer's output is about unit
    scale however deep the residual stack. Detection heads are scaled to unit-variance logits
    with negative objectness and class biases."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    heads = {yolo.index - 1 for yolo in network.yolos}
    weights: list[ConvWeights] = []

    def conv_fn(conv: Conv, x: Any) -> Any:
        fan_in = conv.in_channels * conv.size * conv.size
        kernel = rng.normal(0.0, np.sqrt(2.0 / fan_in), conv.kernel_shape).astype(np.float32)
        p = conv.padding
        padded = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
        z = tf.nn.conv2d(padded, kernel.transpose(2, 3, 1, 0), conv.stride, "VALID").numpy()
        n = conv.filters
        if conv.batch_normalize:
            # Unit-variance filters: darknet's and OpenCV's batch-norm epsilons then agree.
            unit = _round(1.0 / np.sqrt(z.var(axis=(0, 1, 2)) + 1e-6))
            kernel *= unit[:, None, None, None]
            z *= unit
            mean, var = _round(z.mean(axis=(0, 1, 2))), _round(z.var(axis=(0, 1, 2)) + 1e-3)
            gamma = rng.uniform(0.5, 1.5, n).astype(np.float32)
            beta = rng.normal(0.0, 0.5, n).astype(np.float32)
            w = ConvWeights(beta, kernel, (gamma, mean, var))
        elif conv.index in heads:
            unit = _round(np.array(1.0 / np.sqrt(np.mean(z**2) + 1e-6), np.float32))
            scale, bias = _head(rng, n, network.classes)
            w = ConvWeights(bias, kernel * unit * scale[:, None, None, None])
        else:
            w = ConvWeights(np.zeros(n, np.float32), kernel)
        weights.append(w)
        folded_kernel, bias = w.folded()
        y = tf.nn.conv2d(padded, folded_kernel, conv.stride, "VALID") + bias
        return tf.nn.leaky_relu(y, LEAKY_SLOPE) if conv.activation == "leaky" else y

    walk(network, tf.constant(calibration, tf.float32), conv_fn)
    return weights


def _head(rng: np.random.Generator, filters: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel of a random detection head: kernel scale (for unit-variance input
    logits) and bias."""
    anchors = filters // (5 + classes)
    roles = [RANDOM_HEAD_XY] * 2 + [RANDOM_HEAD_WH] * 2 + [RANDOM_HEAD_OBJECTNESS]
    roles += [RANDOM_HEAD_CLASS] * classes
    columns = zip(*roles, strict=True)
    scale, mean, spread = (np.tile(np.array(column, np.float32), anchors) for column in columns)
    bias = mean + spread * rng.standard_normal(filters).astype(np.float32)
    return scale, bias
