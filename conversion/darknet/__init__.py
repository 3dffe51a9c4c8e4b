"""Darknet networks: parse a `.cfg`, read and write `.weights`, build the Keras model, make
random weights.

Supports what YOLOv3 and YOLOv3-tiny use: `convolutional` (with or without `batch_normalize`,
`leaky` or `linear`), `shortcut`, `route` (one or two layers), `upsample`, `maxpool` and `yolo`,
each described once in layers.py. Darknet's semantics are kept exactly: convolutions pad
`size // 2` on every side, batch norm is `(x - mean) / (sqrt(var) + 1e-6)`, leaky slope 0.1, and a
maxpool whose window overhangs the input (tiny's `size=2 stride=1`) pads on the right and bottom
only.

- cfg.py: the `.cfg` syntax and the records of a parsed network;
- layers.py: the layer types (parse, Keras, ONNX) and `parse_cfg`;
- weights_file.py: `.weights` files and a convolution's parameters;
- keras_graph.py: the Keras model and the YOLO decode in TensorFlow;
- random_init.py: deterministic random weights.
"""

from conversion.darknet.cfg import (
    BN_EPSILON,
    LEAKY_SLOPE,
    Conv,
    DarknetError,
    Network,
    Section,
    Yolo,
    absolute_index,
)
from conversion.darknet.keras_graph import apply_conv, decode, keras_model, walk
from conversion.darknet.layers import LAYERS, parse_cfg
from conversion.darknet.random_init import random_weights
from conversion.darknet.weights_file import (
    ConvWeights,
    check_weights_size,
    read_weights,
    write_weights,
)

__all__ = [
    "BN_EPSILON",
    "LAYERS",
    "LEAKY_SLOPE",
    "Conv",
    "ConvWeights",
    "DarknetError",
    "Network",
    "Section",
    "Yolo",
    "absolute_index",
    "apply_conv",
    "check_weights_size",
    "decode",
    "keras_model",
    "parse_cfg",
    "random_weights",
    "read_weights",
    "write_weights",
    "walk",
]
