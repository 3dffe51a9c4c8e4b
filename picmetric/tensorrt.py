"""`picmetric tensorrt on|off`: switch the native onnxruntime backend (NGC image, GPU) to the
TensorRT execution accelerator with FP16 and an engine cache, in every `onnxruntime` model config
of a repository, through Triton's ModelConfig message (core/model_config.py). Off removes the
accelerator again, which gives back the committed configs byte for byte (they are in the
writer's form). The local CPU backend ignores it."""

from __future__ import annotations

from pathlib import Path

from core.model_config import ModelConfig, read_config, update_config, with_accelerator

ENGINE_CACHE = "/cache/tensorrt"  # a volume of the triton service in docker-compose.yml
ACCELERATOR = "tensorrt"
PARAMETERS = {
    "precision_mode": "FP16",
    "max_workspace_size_bytes": "1073741824",
    "trt_engine_cache_enable": "1",
    "trt_engine_cache_path": ENGINE_CACHE,
}

# Models left on the plain CUDA provider, and why.
NOT_TENSORRT = {
    "mtcnn_pnet": "its input height and width change with every photo size and band of rows; "
    "TensorRT would build an engine for each shape",
    "mtcnn_pyramid_pnet": "its inputs change shape with every photo size, level and band of rows, "
    "as mtcnn_pnet's do",
}


def onnxruntime_configs(repository: Path) -> list[Path]:
    """The `onnxruntime` model configs that TensorRT suits (not those in NOT_TENSORRT)."""
    return sorted(
        path
        for path in repository.glob("*/config.pbtxt")
        if path.parent.name not in NOT_TENSORRT and read_config(path).backend == "onnxruntime"
    )


def switched(config: ModelConfig, enable: bool) -> ModelConfig:
    """A copy of `config` with the TensorRT accelerator (enable) or without it."""
    return with_accelerator(config, "gpu", ACCELERATOR, PARAMETERS if enable else None)


def switch(repository: Path, enable: bool) -> list[Path]:
    """Add (enable) or remove the accelerator; returns the configs it changed."""
    return [
        path
        for path in onnxruntime_configs(repository)
        if update_config(path, lambda config: switched(config, enable))
    ]
