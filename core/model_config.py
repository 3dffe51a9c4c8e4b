"""Triton model configurations (`config.pbtxt`) read and written as protobuf text with Triton's
own `ModelConfig` message, never edited as strings.

The writer keeps no comments: the notes on each model live in `model_repository/README.md`, and
every committed config is exactly what `format_config` writes (a test checks it), so a command
that rewrites one changes only what it means to change."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

ModelConfig = model_config_pb2.ModelConfig
CONFIG_FILE = "config.pbtxt"
HEADER = (
    "# Protobuf text written by core/model_config.py, which keeps no comments: the notes on\n"
    "# this model are in model_repository/README.md.\n"
)
# Written first, together; every other field follows in the message's order, a blank line apart.
_HEAD = ("name", "platform", "backend", "max_batch_size")
# Triton's request priorities (dynamic batching's `priority_levels`; 1 is served first): every
# batched model has PRIORITY_LEVELS, a request that names none (priority 0) goes at
# INTERACTIVE_PRIORITY, and a bulk job's requests at BULK_PRIORITY, behind every interactive one
# in each model's queue (model_repository/README.md).
PRIORITY_LEVELS = 2
INTERACTIVE_PRIORITY = 1
BULK_PRIORITY = 2


class ModelConfigError(ValueError):
    """A config.pbtxt that cannot be read, or lacks what the caller needs from it."""


def config_path(model_dir_or_path: Path) -> Path:
    """`model_dir/config.pbtxt` for a model folder; a file path as it is."""
    path = Path(model_dir_or_path)
    return path / CONFIG_FILE if path.is_dir() else path


def read_config(model_dir_or_path: Path) -> model_config_pb2.ModelConfig:
    """The ModelConfig of a model folder or a config.pbtxt; ModelConfigError names the file when
    it is missing or not a valid ModelConfig."""
    path = config_path(model_dir_or_path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelConfigError(f"Cannot read the Triton model config {path}: {exc}") from exc
    try:
        return text_format.Parse(text, ModelConfig())
    except text_format.ParseError as exc:
        raise ModelConfigError(f"{path} is not a valid Triton model config: {exc}") from exc


def format_config(config: model_config_pb2.ModelConfig) -> str:
    """Protobuf text of `config`: the header comment, then name, platform or backend and
    max_batch_size, then every other field set, in field-number order."""
    fields = [descriptor for descriptor, _ in config.ListFields()]
    fields.sort(key=lambda d: (_HEAD.index(d.name) if d.name in _HEAD else len(_HEAD), d.number))
    head: list[str] = []
    blocks: list[str] = []
    for descriptor in fields:
        one = ModelConfig()
        one.CopyFrom(config)
        for other in fields:
            if other is not descriptor:
                one.ClearField(other.name)
        text = text_format.MessageToString(one, use_short_repeated_primitives=True)
        (head if descriptor.name in _HEAD else blocks).append(text)
    return HEADER + "\n".join(["".join(head), *blocks])


def write_config(path: Path, config: model_config_pb2.ModelConfig) -> Path:
    """Write `config` to `path` (a model folder or a config.pbtxt) through a temporary file
    and an atomic replace, so Triton never reads half a file. Returns the file's path."""
    path = config_path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(format_config(config))
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def update_config(
    path: Path, change: Callable[[model_config_pb2.ModelConfig], model_config_pb2.ModelConfig]
) -> bool:
    """Read the config at `path` (a model folder or a config.pbtxt) and write `change(config)` in
    its place (`write_config`) when it differs; the file is left untouched when it does not.
    True when it was written."""
    config = read_config(path)
    new = change(config)
    if new == config:
        return False
    write_config(path, new)
    return True


def with_accelerator(
    config: model_config_pb2.ModelConfig,
    device: Literal["gpu", "cpu"],
    name: str,
    parameters: Mapping[str, str] | None,
) -> model_config_pb2.ModelConfig:
    """A copy of `config` with the execution accelerator `name` on `device` set to `parameters`,
    or taken out (None); other accelerators stay, and blocks left empty go, so taking out what
    was added gives back the config as it was."""
    new = model_config_pb2.ModelConfig()
    new.CopyFrom(config)
    field = f"{device}_execution_accelerator"
    accelerators = getattr(new.optimization.execution_accelerators, field)
    others = [a for a in accelerators if a.name != name]
    del accelerators[:]
    accelerators.extend(others)
    if parameters is not None:
        accelerators.add(name=name, parameters=parameters)
    if not accelerators:
        new.optimization.execution_accelerators.ClearField(field)
        if not new.optimization.execution_accelerators.ByteSize():
            new.optimization.ClearField("execution_accelerators")
    if not new.optimization.ByteSize():
        new.ClearField("optimization")
    return new


def input_dims(config: model_config_pb2.ModelConfig, name: str) -> list[int]:
    """The dims (without the batch dimension) of input `name`."""
    for tensor in config.input:
        if tensor.name == name:
            return list(tensor.dims)
    names = [tensor.name for tensor in config.input]
    raise ModelConfigError(f"Model '{config.name}' has no input '{name}'; its inputs: {names}.")


def square_image_size(config: model_config_pb2.ModelConfig, name: str = "image") -> int:
    """S of an input shaped [S, S, 3] (HWC RGB), as `resnet50` and `yolov3` take."""
    dims = input_dims(config, name)
    if len(dims) != 3 or dims[0] != dims[1] or dims[0] < 1 or dims[2] != 3:
        raise ModelConfigError(
            f"Input '{name}' of model '{config.name}' is {dims}, not a square [S, S, 3]."
        )
    return dims[0]


def parameter(config: model_config_pb2.ModelConfig, key: str) -> str:
    """The string value of `parameters` entry `key`."""
    if key not in config.parameters:
        raise ModelConfigError(
            f"Model '{config.name}' has no parameter '{key}'; it has {sorted(config.parameters)}."
        )
    return str(config.parameters[key].string_value)


def main(paths: list[str]) -> None:
    """Write each config back in `format_config`'s form (after an edit by hand)."""
    for name in paths:
        write_config(Path(name), read_config(Path(name)))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
