"""Every darknet layer type this project supports, in one table: what each does to the channel
count when a `.cfg` is parsed (and what it refuses), and how it is built in Keras and in ONNX.
`parse_cfg`, `keras_graph.walk` and `darknet_onnx.build` walk the layers through `LAYERS`, so a
layer type is added, or its semantics read, in one place.

Darknet's semantics are kept exactly: convolutions pad `size // 2` on every side, leaky slope 0.1,
and a maxpool whose window overhangs the input (tiny's `size=2 stride=1`) pads on the right and
bottom only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conversion.darknet.cfg import (
    LEAKY_SLOPE,
    Conv,
    DarknetError,
    Network,
    Section,
    absolute_index,
    parse_conv,
    parse_sections,
    parse_yolo,
)

if TYPE_CHECKING:
    from conversion.onnx_graph import Graph

ConvFn = Callable[[Conv, Any], Any]


@dataclass
class KerasWalk:
    """The Keras walk so far: the convolution to apply (the caller's), each layer's output."""

    convs: dict[int, Conv]
    conv_fn: ConvFn
    outputs: list[Any] = field(default_factory=list)


@dataclass
class OnnxWalk:
    """The ONNX walk so far: the graph, folded weights, each layer's output and spatial size, and
    the previous layer's (`spatial`, the input's at first)."""

    graph: Graph
    convs: dict[int, Conv]
    folded: dict[int, tuple[np.ndarray, np.ndarray]]
    spatial: int
    outputs: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


class LayerType:
    """One layer type. `channels` resolves (and validates) the layer at parse time and returns
    its output channel count; `keras` and `onnx` build it on the previous layer's output `x`
    (ONNX: NCHW) and return its output (ONNX: with its spatial size)."""

    def channels(self, network: Network, index: int, layer: Section, previous: int) -> int:
        return previous

    def keras(self, walk: KerasWalk, index: int, layer: Section, x: Any) -> Any:
        return x

    def onnx(self, walk: OnnxWalk, index: int, layer: Section, x: str) -> tuple[str, int]:
        return x, walk.spatial


class Convolutional(LayerType):
    def channels(self, network: Network, index: int, layer: Section, previous: int) -> int:
        conv = parse_conv(index, layer, previous)
        network.convs.append(conv)
        return conv.filters

    def keras(self, walk: KerasWalk, index: int, layer: Section, x: Any) -> Any:
        return walk.conv_fn(walk.convs[index], x)

    def onnx(self, walk: OnnxWalk, index: int, layer: Section, x: str) -> tuple[str, int]:
        g, conv = walk.graph, walk.convs[index]
        kernel, bias = walk.folded[index]
        p = conv.padding
        x = g.op(
            "Conv",
            [x, g.const(kernel.transpose(3, 2, 0, 1), "kernel"), g.const(bias, "bias")],
            kernel_shape=[conv.size, conv.size],
            strides=[conv.stride, conv.stride],
            pads=[p, p, p, p],
        )
        if conv.activation == "leaky":
            x = g.op("LeakyRelu", [x], alpha=LEAKY_SLOPE)
        return x, (walk.spatial + 2 * p - conv.size) // conv.stride + 1


class Route(LayerType):
    """The output of one earlier layer, or two concatenated along channels."""

    def channels(self, network: Network, index: int, layer: Section, previous: int) -> int:
        sources = self._sources(index, layer)
        if not 1 <= len(sources) <= 2 or any(not 0 <= s < index for s in sources):
            raise DarknetError(f"[route] at line {layer.line}: unsupported layers {sources}.")
        return sum(network.layer_channels[s] for s in sources)

    def keras(self, walk: KerasWalk, index: int, layer: Section, x: Any) -> Any:
        import keras

        parts = [walk.outputs[s] for s in self._sources(index, layer)]
        return parts[0] if len(parts) == 1 else keras.layers.Concatenate()(parts)

    def onnx(self, walk: OnnxWalk, index: int, layer: Section, x: str) -> tuple[str, int]:
        sources = self._sources(index, layer)
        parts = [walk.outputs[s] for s in sources]
        x = parts[0] if len(parts) == 1 else walk.graph.op("Concat", parts, axis=1)
        return x, walk.sizes[sources[0]]

    @staticmethod
    def _sources(index: int, layer: Section) -> list[int]:
        return [absolute_index(index, i) for i in layer.ints("layers")]


class Shortcut(LayerType):
    """The previous layer's output plus an earlier one's (linear, equal channels only)."""

    def channels(self, network: Network, index: int, layer: Section, previous: int) -> int:
        source = self._source(index, layer)
        if not 0 <= source < index:
            raise DarknetError(
                f"[shortcut] at line {layer.line}: from={layer.get('from')} is layer {source}, "
                f"not one of the {index} layers before it."
            )
        same = network.layer_channels[source] == previous
        if not same or layer.get("activation", "linear") != "linear":
            raise DarknetError(f"[shortcut] at line {layer.line}: only linear, equal channels.")
        return previous

    def keras(self, walk: KerasWalk, index: int, layer: Section, x: Any) -> Any:
        import keras

        return keras.layers.Add()([x, walk.outputs[self._source(index, layer)]])

    def onnx(self, walk: OnnxWalk, index: int, layer: Section, x: str) -> tuple[str, int]:
        source = walk.outputs[self._source(index, layer)]
        return walk.graph.op("Add", [x, source]), walk.spatial

    @staticmethod
    def _source(index: int, layer: Section) -> int:
        return absolute_index(index, int(layer.get("from")))


class Upsample(LayerType):
    """Nearest-neighbour upsampling by `stride`."""

    def keras(self, walk: KerasWalk, index: int, layer: Section, x: Any) -> Any:
        import keras

        return keras.layers.UpSampling2D(int(layer.get("stride", "2")))(x)

    def onnx(self, walk: OnnxWalk, index: int, layer: Section, x: str) -> tuple[str, int]:
        g, stride = walk.graph, int(layer.get("stride", "2"))
        scales = g.const(np.array([1, 1, stride, stride], np.float32), "scales")
        x = g.op(
            "Resize",
            [x, "", scales],
            mode="nearest",
            nearest_mode="floor",
            coordinate_transformation_mode="asymmetric",
        )
        return x, walk.spatial * stride


class Maxpool(LayerType):
    """Darknet pads size - 1 in all, (size - 1) // 2 of it before; padding never wins a max."""

    def keras(self, walk: KerasWalk, index: int, layer: Section, x: Any) -> Any:
        import keras

        size, stride = int(layer.get("size", "1")), int(layer.get("stride", "1"))
        # "same" pads (size - 1) on the right/bottom as darknet does; padding never wins a max.
        return keras.layers.MaxPooling2D(size, stride, padding="same")(x)

    def onnx(self, walk: OnnxWalk, index: int, layer: Section, x: str) -> tuple[str, int]:
        pool, stride = int(layer.get("size", "1")), int(layer.get("stride", "1"))
        before, after = (pool - 1) // 2, pool - 1 - (pool - 1) // 2
        x = walk.graph.op(
            "MaxPool",
            [x],
            kernel_shape=[pool, pool],
            strides=[stride, stride],
            pads=[before, before, after, after],
        )
        return x, (walk.spatial + pool - 1 - pool) // stride + 1


class YoloHead(LayerType):
    """A detection head: its input passes through; the walks collect it as a head output."""

    def channels(self, network: Network, index: int, layer: Section, previous: int) -> int:
        network.yolos.append(parse_yolo(index, layer, previous))
        return previous


LAYERS: dict[str, LayerType] = {
    "convolutional": Convolutional(),
    "route": Route(),
    "shortcut": Shortcut(),
    "upsample": Upsample(),
    "maxpool": Maxpool(),
    "yolo": YoloHead(),
}


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
    for index, layer in enumerate(layers):
        if layer.kind not in LAYERS:
            raise DarknetError(f"[{layer.kind}] at line {layer.line} is not supported.")
        channels = network.layer_channels
        previous = channels[-1] if channels else network.channels
        channels.append(LAYERS[layer.kind].channels(network, index, layer, previous))
    if not network.yolos:
        raise DarknetError(f"{path.name} has no [yolo] layer.")
    return network
