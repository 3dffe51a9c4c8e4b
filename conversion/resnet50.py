"""ResNet50 (Keras ImageNet weights) to ONNX: UINT8 RGB [224,224,3] in, softmax [1000] out, with
Keras "caffe" preprocessing inside the graph."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from conversion import export as export_lib
from conversion import samples, tf_export
from conversion import weights as weights_lib
from core.preprocessing import (
    RESNET50_CAFFE_MEAN_BGR,
    RESNET50_INPUT_SIZE,
    resize_for_resnet50,
)

log = logging.getLogger(__name__)

MODEL_NAME = "resnet50"
CANONICAL = weights_lib.CanonicalWeights(
    url="https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
    "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
    digest="md5:2cb95161c43110f7111970584f804107",
)
# Softmax outputs of the same weights in float32: ONNX Runtime and TensorFlow agree far closer.
VALIDATION_ATOL = 1e-4


def keras_model(weights_path: Path | None):
    """The plain Keras ResNet50 (float input, preprocessing outside) with these weights."""
    import keras

    return keras.applications.ResNet50(weights=str(weights_path) if weights_path else None)


def write_random_weights(path: Path, seed: int) -> None:
    """Deterministic random ResNet50 weights in Keras' weights file format."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras_model(None)
    model.save_weights(str(path))  # the name ends in .weights.h5, which Keras requires


def resolve(spec: str, seed: int, expected_hash: str | None = None) -> weights_lib.Weights:
    return weights_lib.resolve_weights(
        spec,
        name=MODEL_NAME,
        canonical=CANONICAL,
        seed=seed,
        random_suffix=".weights.h5",
        make_random=write_random_weights,
        expected_hash=expected_hash,
    )


def export(weights: weights_lib.Weights, path: Path) -> dict[str, object]:
    """Write the ONNX model to `path` and check it against Keras on real photos."""
    import tensorflow as tf

    model = keras_model(weights.path)
    mean = np.array(RESNET50_CAFFE_MEAN_BGR, dtype=np.float32)
    size = RESNET50_INPUT_SIZE
    signature = [tf.TensorSpec([None, size, size, 3], tf.uint8, name="image")]

    @tf.function(input_signature=signature)
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        bgr = tf.reverse(tf.cast(image, tf.float32), axis=[-1])
        return {"probabilities": model(bgr - mean, training=False)}

    tf_export.export_function(serve, signature, ["probabilities"], path)
    diff = validate(model, path)
    return {"validation_max_abs_diff": diff, "validated_on": list(samples.SAMPLE_PHOTOS)}


def validate(model, path: Path) -> float:
    """Compare ONNX Runtime on the exported file with Keras on the sample photos."""
    import onnxruntime as ort
    from keras.applications.resnet50 import preprocess_input

    batch = np.stack([resize_for_resnet50(p) for p in samples.sample_photos().values()])
    want = model.predict(preprocess_input(batch.astype(np.float32)), verbose=0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["probabilities"], {"image": batch})
    return export_lib.compare_outputs(MODEL_NAME, got, want, VALIDATION_ATOL)


def convert(spec: str, seed: int, repository: Path, expected_hash: str | None = None) -> Path:
    """Convert (or reuse the cached conversion) and install into `repository`."""
    weights = resolve(spec, seed, expected_hash)
    key = export_lib.cache_key(
        [export_lib, tf_export, sys.modules[__name__]],
        weights,
        {"size": RESNET50_INPUT_SIZE, "mean": RESNET50_CAFFE_MEAN_BGR},
    )
    return export_lib.convert_cached(
        MODEL_NAME, key, weights, lambda p: export(weights, p), repository
    )


def run(args: argparse.Namespace) -> None:
    convert(args.weights, args.seed, args.repository, args.weights_hash)
