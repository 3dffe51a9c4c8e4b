"""Darknet `.cfg` files: their sections, and the records of the layers that carry parameters
(`[convolutional]`, `[yolo]`) and of the whole network. What each layer type does is in
layers.py, which `parse_cfg` there walks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

LEAKY_SLOPE = 0.1
BN_EPSILON = 1e-6  # darknet adds it to sqrt(variance)


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
class Network:
    """A parsed `.cfg`: input size and the layers, with channel counts resolved."""

    name: str
    width: int
    height: int
    channels: int
    layers: list[Section]
    convs: list[Conv] = field(default_factory=list)
    yolos: list[Yolo] = field(default_factory=list)
    layer_channels: list[int] = field(default_factory=list)  # each layer's output channels

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


def parse_conv(index: int, layer: Section, in_channels: int) -> Conv:
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


def parse_yolo(index: int, layer: Section, in_channels: int) -> Yolo:
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
