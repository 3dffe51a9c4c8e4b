"""`picmetric tensorrt on|off`: switch the native onnxruntime backend (NGC image, GPU) to the
TensorRT execution accelerator with FP16 and an engine cache, in every `onnxruntime` model config
of a repository. Off restores the configs exactly. The local CPU backend ignores the block."""

from __future__ import annotations

from pathlib import Path

BEGIN = "# >>> picmetric tensorrt (picmetric tensorrt on|off)"
END = "# <<< picmetric tensorrt"
ENGINE_CACHE = "/cache/tensorrt"  # a volume of the triton service in docker-compose.yml

BLOCK = f"""{BEGIN}
optimization {{
  execution_accelerators {{
    gpu_execution_accelerator : [ {{
      name : "tensorrt"
      parameters {{ key: "precision_mode" value: "FP16" }}
      parameters {{ key: "max_workspace_size_bytes" value: "1073741824" }}
      parameters {{ key: "trt_engine_cache_enable" value: "1" }}
      parameters {{ key: "trt_engine_cache_path" value: "{ENGINE_CACHE}" }}
    }} ]
  }}
}}
{END}
"""


# Models left on the plain CUDA provider, and why.
NOT_TENSORRT = {
    "mtcnn_pnet": "its input height and width change with every photo size and band of rows; "
    "TensorRT would build an engine for each shape",
}


def onnxruntime_configs(repository: Path) -> list[Path]:
    """The `onnxruntime` model configs that TensorRT suits (not those in NOT_TENSORRT)."""
    return sorted(
        path
        for path in repository.glob("*/config.pbtxt")
        if 'backend: "onnxruntime"' in path.read_text() and path.parent.name not in NOT_TENSORRT
    )


def without_block(text: str) -> str:
    start = text.find(BEGIN)
    if start < 0:
        return text
    end = text.index(END, start) + len(END) + 1
    return text[:start].rstrip("\n") + "\n" + text[end:].lstrip("\n")


def switch(repository: Path, enable: bool) -> list[Path]:
    """Add (enable) or remove the accelerator block; returns the configs it changed."""
    changed = []
    for path in onnxruntime_configs(repository):
        text = path.read_text()
        new = without_block(text)
        if enable:
            new = new.rstrip("\n") + "\n\n" + BLOCK
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed
