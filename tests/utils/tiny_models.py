"""Tiny hand-built ONNX models to exercise the Python-based onnxruntime backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from core.model_config import ModelConfig, write_config

GATHER_TABLE = np.arange(10, 14, dtype=np.float32)  # out-of-range indices make ORT fail


def gather_config() -> ModelConfig:
    """`gather`: INT64 index [1] in, FP32 value [1] out, batches of up to 16 after 0.2 s."""
    config = ModelConfig(name="gather", backend="onnxruntime", max_batch_size=16)
    config.input.add(name="index", data_type="TYPE_INT64", dims=[1])
    config.output.add(name="value", data_type="TYPE_FP32", dims=[1])
    config.dynamic_batching.max_queue_delay_microseconds = 200000
    return config


def write_gather_model(repository: Path) -> None:
    """`value[b] = GATHER_TABLE[index[b]]`: a request with index >= 4 fails inside ORT."""
    table = numpy_helper.from_array(GATHER_TABLE, "table")
    node = helper.make_node("Gather", ["table", "index"], ["value"], axis=0)
    graph = helper.make_graph(
        [node],
        "gather",
        [helper.make_tensor_value_info("index", TensorProto.INT64, ["batch", 1])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, ["batch", 1])],
        initializer=[table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (repository / "gather" / "1").mkdir(parents=True)
    write_config(repository / "gather" / "config.pbtxt", gather_config())
    onnx.save(model, str(repository / "gather" / "1" / "model.onnx"))
