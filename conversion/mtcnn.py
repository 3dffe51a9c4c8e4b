"""MTCNN's three networks (PNet, RNet, ONet) to ONNX, from the `mtcnn` package's Keras models and
the real weights that ship inside its wheel (so this model is trained even offline).

The graphs are written node by node from the Keras weights (`mtcnn_onnx.py` says how and why)
and checked against the Keras models on real photos and noise.

What the package does to an image before its networks see it, and where that lives here:

- Normalisation `(pixel - 127.5) / 128` (`mtcnn.utils.images.normalize_images`) is folded into
  each graph's first convolution. The networks take FP32 pixels in 0..255, RGB: their inputs are
  resampled images (the pyramid levels and the box crops the cascade makes), whose pixels are
  fractional; rounding them to UINT8 would move the results away from the package's. Clients of
  the `mtcnn` cascade model send UINT8 RGB.
- Layout: channels first, [N, 3, height, width], which the convolutions use (the package feeds
  (height, width, channels); the transposition older Caffe ports needed is baked into its
  weights and the Permute layers of RNet and ONet, which the graphs keep).

Outputs, in the networks' own order and units:

- `mtcnn_pnet`: `offsets` [N, 4, h, w] (x1, y1, x2, y2 box regression, in units of the 12-px
  window) and `probabilities` [N, 2, h, w] (softmax: not face, face), for an input of any height
  and width >= 12.
- `mtcnn_rnet`: 24x24 crops in; `offsets` [N, 4], `probabilities` [N, 2].
- `mtcnn_onet`: 48x48 crops in; `offsets` [N, 4], `landmarks` [N, 10] (x of the five points, then
  y, as fractions of the box), `probabilities` [N, 2].
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from conversion import export as export_lib
from conversion import mtcnn_onnx, onnx_graph, samples
from conversion import weights as weights_lib

log = logging.getLogger(__name__)

PACKAGE = "mtcnn"
# Float32 outputs of the same weights from TensorFlow and ONNX Runtime; they agree to ~1e-6.
VALIDATION_ATOL = 1e-4
VALIDATION_SEED = 0


@dataclass(frozen=True)
class Network:
    """One of the three networks: its Triton model, its Keras class and weights in the package."""

    model: str  # the Triton model name
    keras_class: str  # "module:Class" inside the mtcnn package
    weights_file: str  # inside mtcnn/assets/weights/
    input_size: int | None  # None: any height and width (PNet is fully convolutional)
    outputs: tuple[str, ...]  # the Keras model's outputs, in order
    area_resize: bool = False  # the graph makes its pyramid level band from 8-bit photo rows


PNET_RNET_OUTPUTS = ("offsets", "probabilities")
NETWORKS = (
    Network("mtcnn_pnet", "mtcnn.network.pnet:PNet", "pnet.lz4", None, PNET_RNET_OUTPUTS),
    Network(
        "mtcnn_pyramid_pnet",
        "mtcnn.network.pnet:PNet",
        "pnet.lz4",
        None,
        PNET_RNET_OUTPUTS,
        area_resize=True,
    ),
    Network("mtcnn_rnet", "mtcnn.network.rnet:RNet", "rnet.lz4", 24, PNET_RNET_OUTPUTS),
    Network(
        "mtcnn_onet",
        "mtcnn.network.onet:ONet",
        "onet.lz4",
        48,
        ("offsets", "landmarks", "probabilities"),
    ),
)


def package_source() -> str:
    """`mtcnn==<installed version>`, or a clear error when the package is missing."""
    try:
        return f"{PACKAGE}=={importlib.metadata.version(PACKAGE)}"
    except importlib.metadata.PackageNotFoundError as exc:
        raise weights_lib.WeightsError(
            "The mtcnn package is not installed; install the conversion extras "
            "(pip install -e '.[convert]') to convert MTCNN."
        ) from exc


def package_weights(network: Network) -> weights_lib.Weights:
    """The weights file shipped in the mtcnn wheel, with its sha256."""
    source = package_source()
    path = Path(str(importlib.resources.files(f"{PACKAGE}.assets.weights") / network.weights_file))
    if not path.is_file():
        raise weights_lib.WeightsError(f"{source} ships no {network.weights_file}; reinstall it.")
    return weights_lib.Weights(
        path=path,
        kind="pretrained",
        sha256=weights_lib.file_digest(path),
        source=f"{source} ({PACKAGE}/assets/weights/{network.weights_file})",
    )


def keras_model(network: Network, weights: weights_lib.Weights) -> Any:
    """The package's Keras network with its shipped weights (as its stages build it)."""
    from mtcnn.utils.tensorflow import load_weights

    module, _, name = network.keras_class.partition(":")
    model = getattr(importlib.import_module(module), name)()
    model.build()
    model.set_weights(load_weights(str(weights.path)))
    return model


def normalize(pixels: np.ndarray) -> np.ndarray:
    """The package's own normalisation, the reference for the one inside the graphs."""
    from mtcnn.utils.images import normalize_images

    return np.asarray(normalize_images(pixels), dtype=np.float32)


def export(network: Network, weights: weights_lib.Weights, path: Path) -> dict[str, object]:
    """Write the ONNX model to `path` and check it against Keras."""
    model = keras_model(network, weights)
    graph = mtcnn_onnx.build(
        model, network.model, network.input_size, network.outputs, network.area_resize
    )
    onnx_graph.save(graph, path)
    diff = validate(network, model, path)
    return {
        "validation_max_abs_diff": diff,
        "validated_on": [*samples.SAMPLE_PHOTOS, f"uniform noise seed={VALIDATION_SEED}"],
        "input": (
            "UINT8 RGB photo [height, width, 3] and a level band's area-resize tables"
            if network.area_resize
            else "FP32 RGB pixels 0..255, NCHW"
        )
        + ", (pixel - 127.5) / 128 inside the graph",
    }


def validation_inputs(network: Network) -> list[np.ndarray]:
    """Real photos (whole, for PNet at odd sizes; crops, for RNet and ONet) and noise."""
    rng = np.random.default_rng(VALIDATION_SEED)
    photos = list(samples.sample_photos().values())
    if network.input_size is None:
        odd = [photos[0][:12, :12], photos[1][:37, :53], photos[2][:301, :449]]
        return [p[None].astype(np.float32) for p in [*photos, *odd]] + [
            rng.uniform(0, 255, (2, 37, 53, 3)).astype(np.float32)
        ]
    size = network.input_size
    crops = [p[y : y + size, x : x + size] for p in photos for y, x in ((0, 0), (100, 150))]
    noise = rng.uniform(0, 255, (5, size, size, 3))
    return [np.concatenate([np.stack(crops), noise]).astype(np.float32)]


def validate(network: Network, model: Any, path: Path) -> float:
    """Compare ONNX Runtime on the exported file (NCHW) with Keras (NHWC) on the package's
    normalisation. The graph with the area resize takes 8-bit rows: it gets the inputs rounded,
    one image at a time, resized to their own size."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = list(network.outputs)
    worst = 0.0
    for batch in validation_inputs(network):
        if network.area_resize:
            batch = np.round(batch)
            runs = [session.run(names, identity_resize(image)) for image in batch]
            got = [np.concatenate(maps) for maps in zip(*runs, strict=True)]
        else:
            got = session.run(names, {"image": channels_first(batch)})
        want = [np.asarray(w) for w in model(normalize(batch), training=False)]
        for name, g, w in zip(network.outputs, got, want, strict=True):
            label = f"{network.model}.{name} {list(batch.shape)}"
            g = g.transpose(0, 2, 3, 1) if g.ndim == 4 else g
            worst = max(worst, export_lib.compare_outputs(label, g, w, VALIDATION_ATOL))
    return worst


def identity_resize(image: np.ndarray) -> dict[str, np.ndarray]:
    """`mtcnn_pyramid_pnet`'s inputs that resize an HxWx3 image of whole pixel values to its own
    size (every cell edge on a row boundary, one column tap of weight 1), so that its PNet part
    can be checked against Keras like `mtcnn_pnet`; tests check its resize on real levels."""
    height, width = image.shape[:2]
    return {
        "image": image.astype(np.uint8),
        "row_index": np.minimum(np.arange(height + 1), height - 1),
        "row_rest": np.r_[np.ones(height, np.float32), np.float32(0)],
        "column_index": np.arange(width, dtype=np.int64)[:, None],
        "column_weight": np.ones((width, 1), np.float32),
    }


def channels_first(images: np.ndarray) -> np.ndarray:
    """[N, H, W, C] to the networks' [N, C, H, W]."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def convert_network(network: Network, repository: Path) -> Path:
    """Convert one network (or reuse its cached conversion) and install it into `repository`."""
    weights = package_weights(network)
    key = export_lib.cache_key(
        [export_lib, onnx_graph, mtcnn_onnx, sys.modules[__name__]],
        weights,
        {"network": network.model, "package": weights.source, "opset": onnx_graph.OPSET},
    )
    return export_lib.convert_cached(
        network.model, key, weights, lambda p: export(network, weights, p), repository
    )


def convert(repository: Path) -> list[Path]:
    """Convert PNet (alone and behind the area resize), RNet and ONet into `repository`."""
    return [convert_network(network, repository) for network in NETWORKS]


def run(args: argparse.Namespace) -> None:
    spec = getattr(args, "weights", "auto")
    if spec not in ("auto", "random"):
        raise weights_lib.WeightsError(
            f"MTCNN takes its real weights from the {package_source()} package; --weights "
            f"{spec!r} is not supported (use auto, or leave it out)."
        )
    if spec == "random":
        log.warning("MTCNN ignores --weights random: its weights ship in %s.", package_source())
    if getattr(args, "weights_hash", None):
        log.warning("MTCNN ignores --weights-hash; the package's weight files are hashed instead.")
    convert(args.repository)
