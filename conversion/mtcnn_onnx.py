"""MTCNN's three Keras networks written straight to ONNX, layer by layer, in the form ONNX Runtime
(and TensorRT) run fast.

Why not tf2onnx: its graph keeps TensorFlow's NHWC layout (transposes around the convolutions), and
spells PReLU as Relu/Neg/Relu/Mul/Add over full-resolution feature maps, so PNet ran at about a
fifteenth of the GFLOP/s ONNX Runtime reaches on ResNet50 here. Written directly:

- the networks take and give channels-first tensors (NCHW), the layout the convolutions use, so
  there is no transpose at full resolution (the cascade makes its pyramid levels and crops in it);
- the package's normalisation `(pixel - 127.5) / 128` is folded into the first convolution (exact:
  it has no padding);
- a PReLU followed by a max-pool is moved behind the pool, so it runs on a quarter of the pixels:
  PReLU with a slope <= 1 is convex and with a slope >= 0 non-decreasing (every slope is one or
  the other), so over any window its maximum is at the window's maximum or minimum input:
  maxpool(prelu(y)) = max(prelu(maxpool(y)), prelu(-maxpool(-y))). The convolution before it
  computes y and -y as one (its weights stacked with their negation), so the full-resolution
  work is one convolution and one pool;
- a two-way softmax over channels is a sigmoid of the difference, softmax(a, b) = (sigmoid(a - b),
  sigmoid(b - a)), computed by one convolution or matrix product whose weights are the differences:
  ONNX Runtime fuses it and skips its slow channel-axis softmax.

`build(..., area_resize=True)` puts TensorFlow's area resize in front of PNet
(`mtcnn_pyramid_pnet`): the graph makes a band of a pyramid level from the photo's 8-bit rows
itself, so on a GPU host the pyramid runs on the GPU with PNet, not in the Python model on the CPU
(see `_area_resize`).

`mtcnn.py` validates every export against the Keras model, as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from conversion.onnx_graph import Graph

# (pixel - MEAN) / SCALE: the package's normalisation (mtcnn.utils.images.normalize_images).
PIXEL_MEAN = 127.5
PIXEL_SCALE = 128.0
# ONNX Runtime keeps a convolution's output in its blocked NCHWc layout (and the pool after it)
# only when the channel count is a multiple of its block: 8 with AVX2, 16 with AVX-512.
CHANNEL_BLOCK = 16
# NHWC axis (1 = height, 2 = width, 3 = channels) to its NCHW position.
_NCHW_AXIS = {1: 2, 2: 3, 3: 1}


def build(
    model: Any,
    name: str,
    input_size: int | None,
    outputs: tuple[str, ...],
    area_resize: bool = False,
) -> onnx.ModelProto:
    """The ONNX graph of one of the package's networks (PNet, RNet or ONet, built with weights).
    Its last `len(outputs)` layers are the heads, in the order of `outputs`; the layers before
    them are the trunk, applied in attribute order (as the package's `call()` applies them).

    `image` FP32 [batch, 3, height, width] RGB pixels 0..255 in. PNet's heads come out as maps
    [batch, channels, rows, columns], RNet's and ONet's as rows [batch, units].

    With `area_resize` (PNet only) the inputs are those of `_area_resize` instead, and the maps
    come out for the one level band it makes, [1, channels, rows, columns]."""
    layers = list(model.layers)
    trunk, heads = layers[: -len(outputs)], layers[-len(outputs) :]
    g = Graph()
    x = _trunk(g, _area_resize(g) if area_resize else "image", trunk, name)
    for head, output in zip(heads, outputs, strict=True):
        _head(g, x, head, output)
    return g.model(
        name, _input_infos(input_size, area_resize), _output_infos(heads, outputs, area_resize)
    )


def _trunk(g: Graph, x: str, trunk: list[Any], name: str) -> str:
    """The trunk's layers on `x`, step by step (`_steps`); the first convolution takes the
    normalisation."""
    first_conv = next((layer for layer in trunk if _kind(layer) == "Conv2D"), None)
    permuted = False  # True once a Permute has put the axes in Keras' own order
    for step in _steps(trunk):
        layer, kind = step[0], _kind(step[0])
        if len(step) == 3:
            x = _conv_prelu_pool(g, x, *step, normalise=layer is first_conv)
        elif kind == "Conv2D":
            x = _conv(g, x, *_conv_weights(layer, layer is first_conv), layer)
        elif kind == "PReLU":
            x = _prelu(g, x, layer)
        elif kind == "MaxPooling2D":
            x = _pool(g, x, layer)
        elif kind == "Permute":
            x = g.op("Transpose", [x], perm=[0, *(_NCHW_AXIS[a] for a in layer.dims)])
            permuted = True
        elif kind == "Flatten":
            x = _flatten(g, x, permuted)
        elif kind == "Dense":
            x = _dense(g, x, *_dense_weights(layer))
        else:
            raise ValueError(f"{name}: no ONNX translation for Keras layer {kind} ({layer.name}).")
    return x


def _steps(trunk: list[Any]) -> list[tuple[Any, ...]]:
    """The trunk's layers in order, one step each, except a convolution followed by a PReLU and
    a max-pool: those three are one step (`_conv_prelu_pool`)."""
    fused = ["Conv2D", "PReLU", "MaxPooling2D"]
    steps: list[tuple[Any, ...]] = []
    rest = trunk
    while rest:
        size = len(fused) if [_kind(layer) for layer in rest[: len(fused)]] == fused else 1
        steps.append(tuple(rest[:size]))
        rest = rest[size:]
    return steps


def _flatten(g: Graph, x: str, permuted: bool) -> str:
    """NCHW maps to rows in Keras' order: height, width, channels, unless a Permute has already
    put the axes in the order Keras flattens."""
    if not permuted:
        x = g.op("Transpose", [x], perm=[0, 2, 3, 1])
    return g.op("Flatten", [x], axis=1)


def _input_infos(input_size: int | None, area_resize: bool) -> list[onnx.ValueInfoProto]:
    """The graph's inputs: `image` FP32 [batch, 3, side, side] (any height and width without
    `input_size`), or with `area_resize` those of `_area_resize`."""
    side: list[str | int] = ["height", "width"] if input_size is None else [input_size] * 2
    plain = {"image": (TensorProto.FLOAT, ["batch", 3, *side])}
    inputs = AREA_RESIZE_INPUTS if area_resize else plain
    return [helper.make_tensor_value_info(n, kind, shape) for n, (kind, shape) in inputs.items()]


def _output_infos(
    heads: list[Any], outputs: tuple[str, ...], area_resize: bool
) -> list[onnx.ValueInfoProto]:
    """The heads' outputs, FP32: maps [batch, units, rows, columns] when every head is a
    convolution (PNet), rows [batch, units] otherwise; the batch is 1 behind the area resize."""
    spatial = all(_kind(head) == "Conv2D" for head in heads)
    batch: str | int = 1 if area_resize else "batch"
    return [
        helper.make_tensor_value_info(
            output,
            TensorProto.FLOAT,
            [batch, _units(head), "rows", "columns"] if spatial else [batch, _units(head)],
        )
        for head, output in zip(heads, outputs, strict=True)
    ]


# The inputs of `_area_resize`: name to (ONNX type, shape).
AREA_RESIZE_INPUTS: dict[str, tuple[int, list[str | int]]] = {
    "image": (TensorProto.UINT8, ["photo_height", "photo_width", 3]),
    "row_index": (TensorProto.INT64, ["edges"]),
    "row_rest": (TensorProto.FLOAT, ["edges"]),
    "column_index": (TensorProto.INT64, ["width", "taps"]),
    "column_weight": (TensorProto.FLOAT, ["width", "taps"]),
}


def _area_resize(g: Graph) -> str:
    """Rows of a pyramid level, `tf.image.resize(photo, size, method="area")`, as the Python
    model's numpy pyramid makes them (mtcnn/1/pyramid.py `area_level`, which says why), from:

    - `image` UINT8 [height, width, 3]: the whole photo (the same tensor for every band, so the
      Python model passes on the one it was given, never a copy);
    - `row_index` INT64 [h + 1], `row_rest` FP32 [h + 1]: the photo row each of the band's h + 1
      cell edges falls in and the part of that row after the edge;
    - `column_index` INT64 [w, taps], `column_weight` FP32 [w, taps]: the columns each output
      column overlaps and their weights, the area factor included (unused taps weigh 0).

    The band's rows of the photo are sliced out; down them the whole rows between two edges are
    a difference of running sums, exact in INT32; across, the taps are gathered and weighted.
    Out: the band [1, 3, h, w] FP32."""
    axis0 = g.const(np.array([0], np.int64), "axis")
    one, last = g.const(np.array([1], np.int64)), g.const(np.array([-1], np.int64))
    zero, end = g.const(np.array([0], np.int64)), g.const(np.array([2**62], np.int64))

    def ends(x: str) -> tuple[str, str]:
        """x[1:] and x[:-1] along the first axis."""
        return g.op("Slice", [x, one, end, axis0]), g.op("Slice", [x, zero, last, axis0])

    first_row = g.op("Slice", ["row_index", zero, one, axis0])
    stop_row = g.op("Add", [g.op("Slice", ["row_index", last, end, axis0]), one])
    photo_rows = g.op("Slice", ["image", first_row, stop_row, axis0])
    row_index = g.op("Sub", ["row_index", first_row])
    rows = g.op("Cast", [photo_rows], to=TensorProto.INT32)
    sums = g.op("CumSum", [rows, g.const(np.array(0, np.int32), "axis")])
    after, before = ends(g.op("Gather", [sums, row_index], axis=0))
    whole = g.op("Cast", [g.op("Sub", [after, before])], to=TensorProto.FLOAT)
    rest = g.op("Reshape", ["row_rest", g.const(np.array([-1, 1, 1], np.int64))])
    edge_rows = g.op("Gather", [photo_rows, row_index], axis=0)
    edge_rows = g.op("Cast", [edge_rows], to=TensorProto.FLOAT)
    partial_after, partial_before = ends(g.op("Mul", [edge_rows, rest]))
    band = g.op("Add", [g.op("Sub", [whole, partial_after]), partial_before])  # [h, W, 3]
    taps = g.op("Gather", [band, "column_index"], axis=1)  # [h, w, taps, 3]
    weight = g.op("Unsqueeze", ["column_weight", g.const(np.array([2], np.int64))])
    taps_axis = g.const(np.array([2], np.int64))
    level = g.op("ReduceSum", [g.op("Mul", [taps, weight]), taps_axis], keepdims=0)
    return g.op("Unsqueeze", [g.op("Transpose", [level], perm=[2, 0, 1]), axis0])


def _kind(layer: Any) -> str:
    return type(layer).__name__


def _units(layer: Any) -> int:
    config = layer.get_config()
    return int(config.get("filters") or config["units"])


def _conv_weights(layer: Any, normalise: bool) -> tuple[np.ndarray, np.ndarray]:
    """A Keras Conv2D's kernel as ONNX's [out, in, kh, kw] and its bias, float64; with
    `normalise`, the package's normalisation folded in:
    W (p - m) / s + b = (W / s) p + b - m/s ΣW."""
    if layer.padding != "valid" or tuple(layer.dilation_rate) != (1, 1):
        raise ValueError(f"{layer.name}: only valid, undilated convolutions are translated.")
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    if normalise:
        bias = bias - PIXEL_MEAN / PIXEL_SCALE * kernel.sum(axis=(0, 1, 2))
        kernel = kernel / PIXEL_SCALE
    return kernel.transpose(3, 2, 0, 1), bias


def _conv(g: Graph, x: str, kernel: np.ndarray, bias: np.ndarray, layer: Any) -> str:
    return g.op(
        "Conv",
        [x, g.const(kernel.astype(np.float32), "kernel"), g.const(bias.astype(np.float32), "bias")],
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.strides),
    )


def _dense_weights(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    return kernel, bias


def _dense(g: Graph, x: str, kernel: np.ndarray, bias: np.ndarray) -> str:
    return g.op(
        "Gemm",
        [x, g.const(kernel.astype(np.float32), "kernel"), g.const(bias.astype(np.float32), "bias")],
    )


def _slopes(layer: Any) -> np.ndarray:
    """PReLU slopes, shaped to broadcast over NCHW maps ([C, 1, 1]) or rows ([units])."""
    alpha = np.asarray(layer.get_weights()[0], np.float32)
    return alpha.reshape(-1, 1, 1) if alpha.ndim == 3 else alpha


def _prelu(g: Graph, x: str, layer: Any) -> str:
    return g.op("PRelu", [x, g.const(_slopes(layer), "alpha")])


def _pool(g: Graph, x: str, layer: Any) -> str:
    """A Keras max-pool. TensorFlow's "same" padding puts floor(total / 2) before and the rest
    after; where the total is at most 1 (pool size at most stride + 1, as in all three networks)
    nothing goes before, which is ONNX's ceil_mode: the last window may overhang the end. Unlike
    auto_pad, ceil_mode keeps the pool in ONNX Runtime's blocked (NCHWc) layout."""
    pool, strides = list(layer.pool_size), list(layer.strides)
    same = layer.padding == "same"
    if same and any(p > s + 1 for p, s in zip(pool, strides, strict=True)):
        raise ValueError(f"{layer.name}: 'same' pooling with padding before the input.")
    return g.op("MaxPool", [x], kernel_shape=pool, strides=strides, ceil_mode=int(same))


def _conv_prelu_pool(g: Graph, x: str, conv: Any, prelu: Any, pool: Any, normalise: bool) -> str:
    """maxpool(prelu(conv(x))) as max(prelu(maxpool(y)), prelu(-maxpool(-y))), y = conv(x), with
    y and -y from one convolution (see the module docstring)."""
    kernel, bias = _conv_weights(conv, normalise)
    channels = kernel.shape[0]
    # Zero filters up to a multiple of CHANNEL_BLOCK keep the pool in ONNX Runtime's blocked layout.
    unused = -2 * channels % CHANNEL_BLOCK
    kernel = np.concatenate([kernel, -kernel, np.zeros((unused, *kernel.shape[1:]))])
    both = _conv(g, x, kernel, np.concatenate([bias, -bias, np.zeros(unused)]), conv)
    pooled = _pool(g, both, pool)
    parts = [channels, channels, unused] if unused else [channels, channels]
    names = [g.name("high"), g.name("negated_low"), g.name("unused")][: len(parts)]
    split = g.const(np.array(parts, np.int64), "split")
    g.nodes.append(helper.make_node("Split", [pooled, split], names, axis=1))
    high, negated_low = names[:2]
    low = g.op("Neg", [negated_low])
    return g.op("Max", [_prelu(g, high, prelu), _prelu(g, low, prelu)])


def _head(g: Graph, x: str, layer: Any, output: str) -> None:
    """One output layer into `output`: linear, or a two-way softmax as sigmoids of differences."""
    activation = layer.get_config()["activation"]
    conv = _kind(layer) == "Conv2D"
    kernel, bias = _conv_weights(layer, False) if conv else _dense_weights(layer)
    if activation == "softmax":
        if kernel.shape[0 if conv else 1] != 2:
            raise ValueError(f"{layer.name}: only two-way softmax heads are translated.")
        swap = [1, 0]  # column i gets logit_i - logit_other
        if conv:
            kernel, bias = kernel - kernel[swap], bias - bias[swap]
        else:
            kernel, bias = kernel - kernel[:, swap], bias - bias[swap]
    elif activation != "linear":
        raise ValueError(f"{layer.name}: no ONNX translation for activation {activation}.")
    y = _conv(g, x, kernel, bias, layer) if conv else _dense(g, x, kernel, bias)
    g.op("Sigmoid" if activation == "softmax" else "Identity", [y], output)
