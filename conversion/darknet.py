"""Darknet networks: parse a `.cfg`, read and write `.weights`, and build the Keras model.

Supports what YOLOv3 and YOLOv3-tiny use: `convolutional` (with or without `batch_normalize`,
`leaky` or `linear`), `shortcut`, `route` (one or two layers), `upsample`, `maxpool` and `yolo`.
Darknet's semantics are kept exactly: convolutions pad `size // 2` on every side, batch norm is
`(x - mean) / (sqrt(var) + 1e-6)`, leaky slope 0.1, and a maxpool whose window overhangs the
input (tiny's `size=2 stride=1`) pads on the right and bottom only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conversion.weights import WeightsError

LEAKY_SLOPE = 0.1
BN_EPSILON = 1e-6  # darknet adds it to sqrt(variance)
HEADER_INTS = 3  # major, minor, revision; then `seen` as int64 (int32 in files before 0.2)


class DarknetError(ValueError):
    """A `.cfg` uses something this parser does not support, or is malformed."""


@dataclass(frozen=True)
class Section:
    kind: str
    options: dict[str, str]
    line: int

    def get(self, key: str, default: str | None = None) -> str:
        if key in self.options:
            return self.options[key]
        if default is None:
            raise DarknetError(f"[{self.kind}] at line {self.line} needs '{key}', and has none.")
        return default

    def ints(self, key: str, default: str | None = None) -> list[int]:
        return [int(v) for v in self.get(key, default).split(",") if v.strip()]


@dataclass(frozen=True)
class Conv:
    """One `[convolutional]` section with its input channel count resolved."""

    index: int
    filters: int
    size: int
    stride: int
    padding: int
    batch_normalize: bool
    activation: str
    in_channels: int

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        """Darknet's order: filters, input channels, height, width."""
        return (self.filters, self.in_channels, self.size, self.size)

    @property
    def value_count(self) -> int:
        return self.filters * (4 if self.batch_normalize else 1) + int(np.prod(self.kernel_shape))


@dataclass(frozen=True)
class Yolo:
    """One `[yolo]` head: its anchors (w, h in network-input pixels) and class count."""

    index: int
    anchors: tuple[tuple[float, float], ...]
    classes: int


@dataclass
class ConvWeights:
    """A convolution's parameters as darknet stores them. With batch norm, `bias` is its beta
    and `bn` holds (gamma, mean, var)."""

    bias: np.ndarray
    kernel: np.ndarray  # [filters, in_channels, size, size]
    bn: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # gamma, mean, var

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """Keras [h, w, in, out] kernel and bias with batch norm folded in."""
        kernel = self.kernel.transpose(2, 3, 1, 0).astype(np.float64)
        bias = self.bias.astype(np.float64)
        if self.bn is not None:
            gamma, mean, var = (a.astype(np.float64) for a in self.bn)
            scale = gamma / (np.sqrt(var) + BN_EPSILON)
            kernel = kernel * scale
            bias = bias - mean * scale
        return kernel.astype(np.float32), bias.astype(np.float32)


@dataclass
class Network:
    """A parsed `.cfg`: input size and the layers, with channel counts resolved."""

    name: str
    width: int
    height: int
    channels: int
    layers: list[Section]
    convs: list[Conv] = field(default_factory=list)
    yolos: list[Yolo] = field(default_factory=list)

    @property
    def value_count(self) -> int:
        return sum(conv.value_count for conv in self.convs)

    @property
    def classes(self) -> int:
        return self.yolos[0].classes


def parse_sections(text: str) -> list[Section]:
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if match := re.fullmatch(r"\[(\w+)\]", line):
            sections.append(Section(match.group(1), {}, number))
        elif "=" in line and sections:
            key, value = (part.strip() for part in line.split("=", 1))
            sections[-1].options[key] = value
        else:
            raise DarknetError(f"Line {number} is neither '[section]' nor 'key=value': {raw!r}")
    return sections


def absolute_index(index: int, offset: int) -> int:
    return index + offset if offset < 0 else offset


def parse_cfg(path: Path) -> Network:
    """Parse a darknet `.cfg` file and resolve every layer's channel count."""
    sections = parse_sections(path.read_text())
    if not sections or sections[0].kind not in ("net", "network"):
        raise DarknetError(f"{path.name} must start with a [net] section.")
    net, layers = sections[0], sections[1:]
    network = Network(
        name=path.stem,
        width=int(net.get("width")),
        height=int(net.get("height")),
        channels=int(net.get("channels", "3")),
        layers=layers,
    )
    channels: list[int] = []
    for index, layer in enumerate(layers):
        previous = channels[-1] if channels else network.channels
        if layer.kind == "convolutional":
            conv = _conv(index, layer, previous)
            network.convs.append(conv)
            channels.append(conv.filters)
        elif layer.kind == "route":
            sources = [absolute_index(index, i) for i in layer.ints("layers")]
            if not 1 <= len(sources) <= 2 or any(not 0 <= s < index for s in sources):
                raise DarknetError(f"[route] at line {layer.line}: unsupported layers {sources}.")
            channels.append(sum(channels[s] for s in sources))
        elif layer.kind == "shortcut":
            source = absolute_index(index, int(layer.get("from")))
            if not 0 <= source < index:
                raise DarknetError(
                    f"[shortcut] at line {layer.line}: from={layer.get('from')} is layer {source}, "
                    f"not one of the {index} layers before it."
                )
            if channels[source] != previous or layer.get("activation", "linear") != "linear":
                raise DarknetError(f"[shortcut] at line {layer.line}: only linear, equal channels.")
            channels.append(previous)
        elif layer.kind in ("upsample", "maxpool"):
            channels.append(previous)
        elif layer.kind == "yolo":
            network.yolos.append(_yolo(index, layer, previous))
            channels.append(previous)
        else:
            raise DarknetError(f"[{layer.kind}] at line {layer.line} is not supported.")
    if not network.yolos:
        raise DarknetError(f"{path.name} has no [yolo] layer.")
    return network


def _conv(index: int, layer: Section, in_channels: int) -> Conv:
    size = int(layer.get("size", "1"))
    activation = layer.get("activation", "logistic")
    if activation not in ("leaky", "linear"):
        raise DarknetError(f"[convolutional] at line {layer.line}: activation {activation!r}.")
    if int(layer.get("groups", "1")) != 1:
        raise DarknetError(f"[convolutional] at line {layer.line}: groups are not supported.")
    pad = int(layer.get("pad", "0"))
    return Conv(
        index=index,
        filters=int(layer.get("filters", "1")),
        size=size,
        stride=int(layer.get("stride", "1")),
        padding=size // 2 if pad else int(layer.get("padding", "0")),
        batch_normalize=layer.get("batch_normalize", "0") == "1",
        activation=activation,
        in_channels=in_channels,
    )


def _yolo(index: int, layer: Section, in_channels: int) -> Yolo:
    values = [float(v) for v in layer.get("anchors").split(",") if v.strip()]
    if len(values) % 2:
        raise DarknetError(
            f"[yolo] at line {layer.line}: anchors need width,height pairs, got {len(values)} "
            "numbers."
        )
    pairs = list(zip(values[0::2], values[1::2], strict=True))
    mask = layer.ints("mask", ",".join(str(i) for i in range(len(pairs))))
    if any(not 0 <= i < len(pairs) for i in mask):
        raise DarknetError(f"[yolo] at line {layer.line}: mask {mask} for {len(pairs)} anchors.")
    classes = int(layer.get("classes", "20"))
    if in_channels != len(mask) * (5 + classes):
        raise DarknetError(
            f"[yolo] at line {layer.line}: the layer before has {in_channels} filters, "
            f"expected {len(mask)} anchors x (5 + {classes} classes) = {len(mask) * (5 + classes)}."
        )
    return Yolo(index, tuple(pairs[i] for i in mask), classes)


# --- weights files ---------------------------------------------------------------------------


def _header_bytes(major: int, minor: int) -> int:
    wide_seen = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    return 4 * HEADER_INTS + (8 if wide_seen else 4)


def check_weights_size(path: Path, network: Network) -> int:
    """The header size of a darknet `.weights` file for `network`; raises WeightsError unless
    the file holds exactly the values the network needs."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(4 * HEADER_INTS)
    if len(head) < 4 * HEADER_INTS:
        raise WeightsError(f"{path} is {size} bytes long: not a darknet weights file.")
    major, minor, _ = np.frombuffer(head, "<i4", HEADER_INTS)
    header = _header_bytes(int(major), int(minor))
    expected = header + 4 * network.value_count
    if size != expected:
        raise WeightsError(
            f"{path} has {size:,} bytes, but {network.name}.cfg needs exactly {expected:,} "
            f"({header}-byte header + {network.value_count:,} float32 values). The file is "
            f"{'truncated' if size < expected else 'too long'} or belongs to another network; "
            "check --cfg and the download."
        )
    return header


def read_weights(path: Path, network: Network) -> list[ConvWeights]:
    """Read a darknet `.weights` file for `network`; the size must match exactly."""
    header = check_weights_size(path, network)
    values = np.frombuffer(path.read_bytes(), "<f4", offset=header)
    weights: list[ConvWeights] = []
    position = 0

    def take(count: int) -> np.ndarray:
        nonlocal position
        chunk = values[position : position + count]
        position += count
        return chunk.astype(np.float32)

    for conv in network.convs:
        n = conv.filters
        bias = take(n)
        bn = (take(n), take(n), take(n)) if conv.batch_normalize else None
        kernel = take(int(np.prod(conv.kernel_shape))).reshape(conv.kernel_shape)
        weights.append(ConvWeights(bias, kernel, bn))
    return weights


def write_weights(path: Path, network: Network, weights: list[ConvWeights], seen: int = 0) -> None:
    """Write darknet's format (version 0.2.0: int64 `seen`) that darknet and OpenCV read."""
    with path.open("wb") as f:
        f.write(np.array([0, 2, 0], "<i4").tobytes() + np.array([seen], "<i8").tobytes())
        for conv, w in zip(network.convs, weights, strict=True):
            parts = [w.bias, *(w.bn or ()), w.kernel]
            expected = [(conv.filters,)] * (4 if conv.batch_normalize else 1) + [conv.kernel_shape]
            if [p.shape for p in parts] != expected:
                shapes = [p.shape for p in parts]
                raise ValueError(f"layer {conv.index}: shapes {shapes}, expected {expected}")
            for part in parts:
                f.write(np.ascontiguousarray(part, "<f4").tobytes())


# --- the network as TensorFlow / Keras --------------------------------------------------------

ConvFn = Callable[[Conv, Any], Any]


def walk(network: Network, x: Any, conv_fn: ConvFn) -> list[Any]:
    """Run the layers on `x` (a Keras symbolic tensor or an eager tensor) with `conv_fn` for the
    convolutions; returns the raw outputs of the `[yolo]` layers, NHWC."""
    import keras

    convs = {conv.index: conv for conv in network.convs}
    outputs: list[Any] = []
    heads: list[Any] = []
    for index, layer in enumerate(network.layers):
        if layer.kind == "convolutional":
            x = conv_fn(convs[index], x)
        elif layer.kind == "route":
            sources = [outputs[absolute_index(index, i)] for i in layer.ints("layers")]
            x = sources[0] if len(sources) == 1 else keras.layers.Concatenate()(sources)
        elif layer.kind == "shortcut":
            x = keras.layers.Add()([x, outputs[absolute_index(index, int(layer.get("from")))]])
        elif layer.kind == "upsample":
            x = keras.layers.UpSampling2D(int(layer.get("stride", "2")))(x)
        elif layer.kind == "maxpool":
            size = int(layer.get("size", "1"))
            # "same" pads (size - 1) on the right/bottom as darknet does; padding never wins a max.
            x = keras.layers.MaxPooling2D(size, int(layer.get("stride", "1")), padding="same")(x)
        elif layer.kind == "yolo":
            heads.append(x)
        outputs.append(x)
    return heads


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


# --- random weights --------------------------------------------------------------------------

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
