"""tf2onnx export of a TensorFlow function with the tensor names config.pbtxt uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from conversion.onnx_graph import OPSET


def export_function(
    fn: Any, input_signature: list[Any], output_names: list[str], path: Path
) -> None:
    """Convert a `tf.function` returning a dict to ONNX with its outputs renamed to the dict keys
    (and the inputs named by their TensorSpec names)."""
    import tf2onnx

    model, _ = tf2onnx.convert.from_function(fn, input_signature=input_signature, opset=OPSET)
    _rename_outputs(model, output_names)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _rename_outputs(model: onnx.ModelProto, names: list[str]) -> None:
    """tf2onnx names outputs after graph tensors ("Identity:0"); rename them to the contract."""
    graph = model.graph
    if len(graph.output) != len(names):
        raise ValueError(
            f"expected outputs {names}, the graph has {[o.name for o in graph.output]}"
        )
    for output, new in zip(graph.output, names, strict=True):
        old = output.name
        if old == new:
            continue
        for node in graph.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]
        output.name = new
