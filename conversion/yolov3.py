"""YOLOv3 (darknet cfg + weights) to ONNX as `yolov3_backbone`: UINT8 RGB [S,S,3] letterboxed in;
/255, the network and the YOLO decode inside the graph; candidate `boxes` [N,4] (x_min, y_min,
x_max, y_max in input pixels) and `scores` [N,80] (objectness x class probability) out.

`yolov3_postprocess` (threshold, NMS, letterbox undo) and the `yolov3` ensemble are committed
Triton models; this module only writes the backbone, and sets the input size in their configs
(through protobuf: core/model_config.py) when `--size` is not the one they say, and the backbone's
candidate count when the cfg or the size changes it."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from conversion import darknet, darknet_onnx, onnx_graph, samples
from conversion import export as export_lib
from conversion import weights as weights_lib
from conversion.yolov3_options import CFGS
from core.model_config import CONFIG_FILE, ModelConfig, update_config
from core.models import COCO_NAMES
from core.paths import MODEL_REPOSITORY
from core.preprocessing import YOLOV3_INPUT_SIZE, letterbox

log = logging.getLogger(__name__)

MODEL_NAME = "yolov3_backbone"
DATA_DIR = Path(__file__).resolve().parent / "data"
CANONICAL = {
    "yolov3.cfg": weights_lib.CanonicalWeights(
        url="https://pjreddie.com/media/files/yolov3.weights",
        digest="md5:c84e5b99d0e52cd466ae710cadf6d84c",
    ),
    "yolov3-tiny.cfg": weights_lib.CanonicalWeights(
        url="https://pjreddie.com/media/files/yolov3-tiny.weights",
        digest="md5:3bcd6b390912c18924b46b26a9e7ff53",
    ),
}
# What a custom cfg is compared with: no URL and a digest no file has, so its weights are "file".
UNPUBLISHED = weights_lib.CanonicalWeights(url="", digest="sha256:")
# ONNX Runtime against TensorFlow, same float32 weights, 75 layers deep: boxes in units of the
# input size (as darknet reports them; observed ~3e-5), scores in [0, 1].
VALIDATION_ATOL_BOXES = 1e-4
VALIDATION_ATOL_SCORES = 1e-4
# Models whose `image` dims and the postprocess' `input_size` follow --size.
SIZED_CONFIGS = ("yolov3_backbone", "yolov3", "yolov3_postprocess")


def cfg_path(cfg: str) -> Path:
    """A bundled network definition by name, or a path to another darknet .cfg."""
    return DATA_DIR / cfg if cfg in CFGS else Path(cfg).expanduser().resolve()


def class_names() -> list[str]:
    return (MODEL_REPOSITORY / COCO_NAMES).read_text().splitlines()


def calibration_image(size: int) -> np.ndarray:
    """A real photo, letterboxed and scaled to [0, 1], for random weights' batch-norm statistics."""
    photo = samples.sample_photos(("astronaut",))["astronaut"]
    return (letterbox(photo, size)[0][None] / 255.0).astype(np.float32)


def write_random_weights(cfg: Path, path: Path, seed: int) -> None:
    """A darknet-format weights file (which darknet and OpenCV read too) with random values."""
    network = darknet.parse_cfg(cfg)
    weights = darknet.random_weights(network, seed, calibration_image(network.width))
    darknet.write_weights(path, network, weights)


def canonical_weights(path: Path) -> weights_lib.CanonicalWeights | None:
    """The published weights of a bundled cfg; None for any other cfg (even one named alike)."""
    return CANONICAL.get(path.name) if path == DATA_DIR / path.name else None


def resolve(
    spec: str, seed: int, cfg: str = "yolov3.cfg", expected_hash: str | None = None
) -> weights_lib.Weights:
    """`--weights` for `cfg`. `auto` downloads the published weights of a bundled cfg; another
    cfg has none, so it needs an explicit PATH, URL or `random` (WeightsError otherwise)."""
    path = cfg_path(cfg)
    if not path.is_file():
        raise darknet.DarknetError(
            f"--cfg {cfg}: {path} does not exist; name {' or '.join(CFGS)} or a darknet .cfg."
        )
    canonical = canonical_weights(path)
    if canonical is None and spec == "auto":
        raise weights_lib.WeightsError(
            f"--weights auto downloads the published weights of {' and '.join(CFGS)} only; "
            f"{path} has none. Pass --weights PATH or URL with weights trained for it, or "
            "--weights random."
        )
    # A custom cfg's random weights are cached under its content's hash: "yolov3.cfg" elsewhere
    # must not reuse the bundled network's file.
    name = path.stem
    if canonical is None:
        name += "-" + hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    return weights_lib.resolve_weights(
        spec,
        name=name,
        canonical=canonical or UNPUBLISHED,
        seed=seed,
        random_suffix=".weights",
        make_random=lambda p, s: write_random_weights(path, p, s),
        expected_hash=expected_hash,
    )


def load(
    cfg: Path, weights: weights_lib.Weights
) -> tuple[darknet.Network, list[darknet.ConvWeights]]:
    network = darknet.parse_cfg(cfg)
    names = class_names()
    if network.classes != len(names):
        raise darknet.DarknetError(
            f"{cfg.name} has {network.classes} classes, {COCO_NAMES.name} lists {len(names)}."
        )
    return network, darknet.read_weights(weights.path, network)


def export(cfg: Path, weights: weights_lib.Weights, size: int, path: Path) -> dict[str, object]:
    """Write the ONNX model to `path` and check it against the Keras model (with the decode in
    TensorFlow) on real photos."""
    import tensorflow as tf

    if size % 32:
        raise ValueError(f"--size must be a multiple of 32, not {size}.")
    network, conv_weights = load(cfg, weights)
    onnx_graph.save(darknet_onnx.build(network, conv_weights, size), path)
    model = darknet.keras_model(network, conv_weights, size)

    @tf.function
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        heads = model(tf.cast(image, tf.float32) / 255.0, training=False)
        boxes, scores = darknet.decode(network, list(heads), size)
        return {"boxes": boxes, "scores": scores}

    diffs, candidates = validate(serve, path, size)
    return {
        "cfg": cfg.name,
        "input_size": size,
        "candidates": candidates,
        "validation_max_abs_diff": diffs,
        "validated_on": list(samples.SAMPLE_PHOTOS),
    }


def validate(serve: Any, path: Path, size: int) -> tuple[dict[str, float], int]:
    """Compare ONNX Runtime on the exported file with Keras + TensorFlow on sample photos;
    returns the max abs differences and the number of candidates per image."""
    import onnxruntime as ort

    batch = np.stack([letterbox(p, size)[0] for p in samples.sample_photos().values()])
    want = {k: v.numpy() for k, v in serve(batch).items()}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores = session.run(["boxes", "scores"], {"image": batch})
    diffs = {
        "boxes": export_lib.compare_outputs(
            f"{MODEL_NAME} boxes", boxes / size, want["boxes"] / size, VALIDATION_ATOL_BOXES
        ),
        "scores": export_lib.compare_outputs(
            f"{MODEL_NAME} scores", scores, want["scores"], VALIDATION_ATOL_SCORES
        ),
    }
    return diffs, int(boxes.shape[1])


def sized(config: ModelConfig, size: int, candidates: int) -> ModelConfig:
    """A copy of `config` with `size` x `size` for its `image` input, its warm-up image and its
    `input_size` parameter, and `candidates` rows in the backbone's outputs, where it has them.
    The backbone's row count is fixed by the cfg and the size, so ONNX Runtime reports it, and
    NGC's native onnxruntime backend refuses an output whose config says -1 there instead."""
    new = ModelConfig()
    new.CopyFrom(config)
    for tensor in new.input:
        if tensor.name == "image":
            tensor.dims[:] = [size, size, 3]
    if new.name == MODEL_NAME:
        for tensor in new.output:
            tensor.dims[0] = candidates
    for warmup in new.model_warmup:
        if "image" in warmup.inputs:
            warmup.inputs["image"].dims[:] = [size, size, 3]
    if "input_size" in new.parameters:
        new.parameters["input_size"].string_value = str(size)
    return new


def set_input_size(repository: Path, size: int, candidates: int) -> None:
    """Make the Triton configs in `repository` agree with the exported input size and the
    backbone's number of candidate boxes."""
    for model in SIZED_CONFIGS:
        path = repository / model / CONFIG_FILE
        if not path.exists():  # a scratch repository with the backbone only
            continue
        if update_config(path, lambda config: sized(config, size, candidates)):
            log.warning(
                "Set the input size in %s to %d (%d candidate boxes)", path, size, candidates
            )


def convert(
    spec: str,
    seed: int,
    repository: Path,
    expected_hash: str | None = None,
    cfg: str = "yolov3.cfg",
    size: int = YOLOV3_INPUT_SIZE,
) -> Path:
    """Convert (or reuse the cached conversion) and install into `repository`."""
    path = cfg_path(cfg)
    weights = resolve(spec, seed, cfg, expected_hash)
    darknet.check_weights_size(weights.path, darknet.parse_cfg(path))  # fail before any work
    key = export_lib.cache_key(
        [export_lib, darknet, darknet_onnx, onnx_graph, sys.modules[__name__]],
        weights,
        {"cfg": path.read_text(), "size": size},
    )
    installed = export_lib.convert_cached(
        MODEL_NAME, key, weights, lambda p: export(path, weights, size, p), repository
    )
    provenance = json.loads((installed.parent / export_lib.PROVENANCE_FILE).read_text())
    set_input_size(repository, size, provenance["candidates"])
    return installed


def run(args: argparse.Namespace) -> None:
    convert(args.weights, args.seed, args.repository, args.weights_hash, args.cfg, args.size)
