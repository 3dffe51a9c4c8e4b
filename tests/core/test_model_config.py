"""core/model_config.py: Triton's ModelConfig read and written as protobuf text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from core.model_config import (
    INTERACTIVE_PRIORITY,
    PRIORITY_LEVELS,
    ModelConfig,
    ModelConfigError,
    format_config,
    input_dims,
    parameter,
    read_config,
    square_image_size,
    update_config,
    write_config,
)
from core.paths import MODEL_REPOSITORY

COMMITTED = sorted(MODEL_REPOSITORY.glob("*/config.pbtxt"))


def test_the_repository_has_configs() -> None:
    assert len(COMMITTED) >= 8


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_read_write_round_trip_gives_an_equal_message(path: Path, tmp_path: Path) -> None:
    config = read_config(path.parent)
    assert config.name == path.parent.name  # Triton requires it
    written = write_config(tmp_path / "config.pbtxt", config)
    assert read_config(written) == config


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_committed_config_is_in_the_writers_form(path: Path) -> None:
    """So a command that rewrites it changes only what it means to change."""
    assert path.read_text() == format_config(read_config(path)), (
        f"{path} is not as core/model_config.py writes it: run "
        f"`python -m core.model_config {path}` (notes belong in model_repository/README.md)."
    )


def test_every_batched_model_has_the_request_priorities() -> None:
    """A bulk job's requests (priority 2) queue behind interactive ones in every dynamic batcher
    (mtcnn's batches nothing: it is there for the priorities); an ensemble passes its request's
    priority to its steps."""
    batched = [read_config(path) for path in COMMITTED]
    batched = [config for config in batched if config.HasField("dynamic_batching")]
    expected = {"resnet50", "yolov3_backbone", "mtcnn", "mtcnn_rnet", "mtcnn_onet"}
    assert {config.name for config in batched} >= expected
    for config in batched:
        levels = config.dynamic_batching.priority_levels
        default = config.dynamic_batching.default_priority_level
        assert (levels, default) == (PRIORITY_LEVELS, INTERACTIVE_PRIORITY), config.name


def test_malformed_config_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken" / "config.pbtxt"
    path.parent.mkdir()
    path.write_text('name: "broken"\nbackend: "onnxruntime"\nmax_batch_size: "eight"\n')
    with pytest.raises(ModelConfigError, match=f"{path} is not a valid Triton model config"):
        read_config(path.parent)


def test_unknown_field_is_an_error_naming_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "x"\nmax_batch_sise: 8\n')
    with pytest.raises(ModelConfigError, match=f"(?s){path}.*max_batch_sise"):
        read_config(path)


def test_missing_config_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match=str(tmp_path / "config.pbtxt")):
        read_config(tmp_path)


def test_write_config_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "config.pbtxt").write_text("old")
    write_config(tmp_path, ModelConfig(name="m", backend="python", max_batch_size=4))
    assert [p.name for p in tmp_path.iterdir()] == ["config.pbtxt"]
    text = (tmp_path / "config.pbtxt").read_text()
    assert text.splitlines()[2:] == ['name: "m"', 'backend: "python"', "max_batch_size: 4"]


def test_update_config_writes_only_a_changed_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, ModelConfig(name="m", backend="python", max_batch_size=4))
    path.write_text(path.read_text() + "# kept while nothing changes\n")

    def batch_of(size: int) -> Callable[[ModelConfig], ModelConfig]:
        def change(config: ModelConfig) -> ModelConfig:
            new = ModelConfig()
            new.CopyFrom(config)
            new.max_batch_size = size
            return new

        return change

    assert not update_config(tmp_path, batch_of(4))
    assert path.read_text().endswith("# kept while nothing changes\n")
    assert update_config(path, batch_of(8))
    assert path.read_text() == format_config(
        ModelConfig(name="m", backend="python", max_batch_size=8)
    )


def test_format_config_puts_name_and_backend_first_and_repeats_dims_on_one_line() -> None:
    config = ModelConfig(name="m", backend="onnxruntime", max_batch_size=2)
    config.input.add(name="image", data_type="TYPE_UINT8", dims=[416, 416, 3])
    config.parameters["input_size"].string_value = "416"
    body = format_config(config).split("\n", 2)[2]
    assert body.startswith('name: "m"\nbackend: "onnxruntime"\nmax_batch_size: 2\n\ninput {')
    assert "dims: [416, 416, 3]" in body


def test_helpers_read_dims_sizes_and_parameters() -> None:
    backbone = read_config(MODEL_REPOSITORY / "yolov3_backbone")
    assert input_dims(backbone, "image")[2] == 3
    assert square_image_size(backbone) == input_dims(backbone, "image")[0]
    assert parameter(backbone, "max_rows_per_run") == "2"


def test_helpers_say_what_is_missing() -> None:
    pnet = read_config(MODEL_REPOSITORY / "mtcnn_pnet")
    with pytest.raises(ModelConfigError, match="no input 'pixels'; its inputs: \\['image'\\]"):
        input_dims(pnet, "pixels")
    with pytest.raises(ModelConfigError, match=r"is \[3, -1, -1\], not a square"):
        square_image_size(pnet)
    with pytest.raises(ModelConfigError, match="'mtcnn_pnet' has no parameter 'input_size'"):
        parameter(pnet, "input_size")
