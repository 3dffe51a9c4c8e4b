"""Darknet `.weights` files: read, written and size-checked against a parsed network; a
convolution's parameters as darknet stores them, and folded for Keras or ONNX."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conversion.darknet.cfg import BN_EPSILON, Network
from conversion.weights import WeightsError

HEADER_INTS = 3  # major, minor, revision; then `seen` as int64 (int32 in files before 0.2)


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
